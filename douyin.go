package mpauthx

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// A Douyin (ByteDance) mini program logs in with tt.login's code, which
// code2session v2 trades for the openid, unionid and session key; its
// encryptedData uses WeChat's scheme (Authorize, Decrypt). A phone code
// from <button open-type="getPhoneNumber"> is traded at
// get_phonenumber_info with the app's client_token (AccessToken, shared
// through Redis like WeChat's access token) for the phone number,
// encrypted with RSA (PKCS#1 v1.5) to the public key configured in
// Douyin's console and opened with Config.PrivateKey.

// DouyinError is an err_no from Douyin's API, inside an HTTP 200. The
// Client returns it wrapped in an *Error (StatusSessionKeyRequestError
// for a login, StatusPhoneNumberError for a phone number); find it with
// errors.As.
type DouyinError struct {
	ErrNo  int64  // Douyin's err_no, such as DouyinErrBadCode
	ErrMsg string // its err_tips (or err_msg), with the app secret and the request's secrets removed
}

// Error returns "douyin: err_no N: message".
func (e *DouyinError) Error() string {
	return fmt.Sprintf("douyin: err_no %d: %s", e.ErrNo, e.ErrMsg)
}

// Douyin's err_no values of code2session v2.
const (
	DouyinErrSystem           = -1    // system error; mpauthx retries it like WeChat's busy
	DouyinErrBadParams        = 40014 // a parameter is missing or malformed
	DouyinErrBadAppID         = 40015 // AppID is wrong
	DouyinErrBadSecret        = 40017 // AppSecret is wrong
	DouyinErrBadCode          = 40018 // the code is invalid, expired or used
	DouyinErrBadAnonymousCode = 40019 // the anonymous_code is invalid (not used by mpauthx)
)

// newDouyinError is the *DouyinError of an err_no and its message, with
// secrets removed before the message is cut, as newWeChatError does.
func newDouyinError(errNo int64, msg string, secrets ...string) *DouyinError {
	we := newWeChatError(0, msg, secrets...)
	return &DouyinError{ErrNo: errNo, ErrMsg: we.ErrMsg}
}

// douyinSessionRequest is code2session v2's JSON body.
type douyinSessionRequest struct {
	AppID  string `json:"appid"`
	Secret string `json:"secret"`
	Code   string `json:"code"`
}

// douyinSessionReply is code2session v2's JSON reply.
type douyinSessionReply struct {
	ErrNo   int64  `json:"err_no"`
	ErrTips string `json:"err_tips"`
	Data    *struct {
		SessionKey string `json:"session_key"`
		OpenID     string `json:"openid"`
		UnionID    string `json:"unionid"`
	} `json:"data"`
}

// douyinSessionOnce makes one code2session v2 request for a tt.login code.
func (c *Client) douyinSessionOnce(ctx context.Context, code string) (session, error) {
	body, _ := json.Marshal(douyinSessionRequest{AppID: c.appID, Secret: c.secret, Code: code})
	reply, err := c.callAPI(ctx, http.MethodPost, c.douyinSessionURL, body, code)
	if err != nil {
		return session{}, err
	}
	return parseDouyinSessionReply(reply, c.secret, code)
}

// parseDouyinSessionReply parses code2session v2's body: an *Error
// (empty, not JSON, openid or session_key missing or unusable) or a
// *DouyinError for a non-zero err_no, made with secrets (the app secret
// and the code) removed from its message.
func parseDouyinSessionReply(body []byte, secrets ...string) (session, error) {
	var r douyinSessionReply
	if err := decodeReply(body, "jscode2session", &r); err != nil {
		return session{}, err
	}
	if r.ErrNo != 0 {
		return session{}, newDouyinError(r.ErrNo, r.ErrTips, secrets...)
	}
	if r.Data == nil || r.Data.OpenID == "" || r.Data.SessionKey == "" {
		return session{}, newError(StatusSessionKeyRequestError, "jscode2session reply lacks openid or session_key", nil)
	}
	if !validUserID(r.Data.OpenID) || (r.Data.UnionID != "" && !validUserID(r.Data.UnionID)) {
		return session{}, newError(StatusSessionKeyRequestError, "jscode2session reply has an unusable openid or unionid", nil)
	}
	return session{openID: r.Data.OpenID, unionID: r.Data.UnionID, sessionKey: r.Data.SessionKey}, nil
}

// douyinPhoneReply is get_phonenumber_info's JSON reply: data is the
// base64 of the RSA-encrypted phone number.
type douyinPhoneReply struct {
	ErrNo  int64  `json:"err_no"`
	ErrMsg string `json:"err_msg"`
	Data   string `json:"data"`
}

// douyinPhonePlain is the decrypted data of get_phonenumber_info.
// countryCode is read as a string or a number.
type douyinPhonePlain struct {
	PhoneNumber     string          `json:"phoneNumber"`
	PurePhoneNumber string          `json:"purePhoneNumber"`
	CountryCode     json.RawMessage `json:"countryCode"`
	Watermark       Watermark       `json:"watermark"`
}

// errPhoneData is the cause of phone data that does not decrypt with
// Config.PrivateKey or is not the JSON expected. Both read the same, so
// that no caller learns which (see the comment of douyinDecrypt).
var errPhoneData = errors.New("the phone data does not decrypt with Config.PrivateKey to a phone number")

// douyinPhone exchanges a Douyin phone code for the phone number with the
// app's client_token (renewed once if Douyin rejects it), and checks that
// the data's watermark names this app.
func (c *Client) douyinPhone(ctx context.Context, phoneCode string) (Phone, error) {
	if c.privateKey == nil {
		return Phone{}, newError(StatusPhoneNumberError, "Douyin's phone numbers need Config.PrivateKey", nil)
	}
	body, _ := json.Marshal(phoneRequest{Code: phoneCode})
	var p Phone
	err := c.withAccessToken(ctx, StatusPhoneNumberError, "get_phonenumber_info", func(token string) error {
		reply, err := c.callAPIHeader(ctx, http.MethodPost, c.douyinPhoneURL, http.Header{"access-token": {token}}, body, phoneCode)
		if err != nil {
			return err
		}
		ct, err := parseDouyinPhoneReply(reply, c.secret, token, phoneCode)
		if err != nil {
			return err
		}
		var appID string
		p, appID, err = douyinDecryptPhone(c.privateKey, ct)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(appID), []byte(c.appID)) != 1 {
			return newError(StatusPhoneNumberError, "the phone number is not for this app", errWatermark)
		}
		return nil
	})
	return p, err
}

// parseDouyinPhoneReply parses get_phonenumber_info's body and returns
// the ciphertext: an *Error (empty, not JSON, no data) or a *DouyinError
// for an err_no, with secrets removed from its message.
func parseDouyinPhoneReply(body []byte, secrets ...string) ([]byte, error) {
	var r douyinPhoneReply
	if err := decodeReply(body, "get_phonenumber_info", &r); err != nil {
		return nil, err
	}
	if r.ErrNo != 0 {
		return nil, newDouyinError(r.ErrNo, r.ErrMsg, secrets...)
	}
	ct, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(ct) == 0 {
		return nil, newError(StatusPhoneNumberError, "get_phonenumber_info reply lacks data", nil)
	}
	return ct, nil
}

// douyinDecryptPhone opens the phone data with the app's private key and
// returns the phone and the watermark's appid.
func douyinDecryptPhone(key *rsa.PrivateKey, ct []byte) (Phone, string, error) {
	plain, err := douyinDecrypt(key, ct)
	if err != nil {
		return Phone{}, "", newError(StatusPhoneNumberError, "cannot decrypt the phone number", errPhoneData)
	}
	return parseDouyinPhonePlain(plain)
}

// parseDouyinPhonePlain parses the decrypted phone data and returns the
// phone and the watermark's appid; every failure is a
// StatusPhoneNumberError.
func parseDouyinPhonePlain(plain []byte) (Phone, string, error) {
	var d douyinPhonePlain
	if err := json.Unmarshal(plain, &d); err != nil {
		return Phone{}, "", newError(StatusPhoneNumberError, "cannot decrypt the phone number", errPhoneData)
	}
	p := Phone{PhoneNumber: d.PhoneNumber, PurePhoneNumber: d.PurePhoneNumber, CountryCode: jsonScalar(d.CountryCode)}
	if p.PhoneNumber == "" {
		p.PhoneNumber = p.PurePhoneNumber
	}
	if p.CountryCode == "" {
		p.CountryCode = "86"
	}
	if !validPhoneField(p.PurePhoneNumber, false) || !validPhoneField(p.PhoneNumber, true) || !validPhoneField(p.CountryCode, true) {
		return Phone{}, "", newError(StatusPhoneNumberError, "get_phonenumber_info gave an unusable phone number", nil)
	}
	return p, d.Watermark.AppID, nil
}

// douyinDecrypt undoes RSA PKCS#1 v1.5 encryption block by block (a
// ciphertext of several key-sized blocks is decrypted block by block, as
// some SDKs expect). PKCS#1 v1.5 decryption can be an oracle for whoever
// can submit ciphertexts and learn whether they decrypt; here the
// ciphertext comes from Douyin's reply over TLS, never from the mini
// program, and every failure reads the same.
func douyinDecrypt(key *rsa.PrivateKey, ct []byte) ([]byte, error) {
	k := key.Size()
	if len(ct) == 0 || len(ct)%k != 0 {
		return nil, errPhoneData
	}
	var plain []byte
	for len(ct) > 0 {
		//lint:ignore SA1019 Douyin encrypts phone numbers with PKCS#1 v1.5; see the comment above.
		b, err := rsa.DecryptPKCS1v15(nil, key, ct[:k])
		if err != nil {
			return nil, errPhoneData
		}
		plain = append(plain, b...)
		ct = ct[k:]
	}
	return plain, nil
}

// jsonScalar returns a JSON string's value or a JSON number's text; ""
// for anything else.
func jsonScalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := strconv.ParseUint(n.String(), 10, 32); err == nil {
			return n.String()
		}
	}
	return ""
}
