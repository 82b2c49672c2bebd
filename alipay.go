package mpauthx

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// An Alipay mini program (Platform AlipayMiniProgram) logs in with the
// auth code of my.getAuthCode, exchanged through alipay.system.oauth.token
// on Alipay's open API gateway: a form POSTed to {APIBase}/gateway.do,
// signed RSA2 (SHA256withRSA, PKCS#1 v1.5) with Config.PrivateKey. Every
// reply is verified with Config.AlipayPublicKey over the raw bytes of its
// response member, exactly as received: a success that is unsigned or
// mis-signed is refused. my.getPhoneNumber's response is verified the same
// way and decrypted with Config.AESKey. docs/alipay.md has the details and
// their sources.

// The gateway's names.
const (
	alipayTokenMethod = "alipay.system.oauth.token"
	alipayTokenRoot   = "alipay_system_oauth_token_response" // the method's name, '.' read as '_', + "_response"
	alipayErrorRoot   = "error_response"
	alipayCodeOK      = "10000"
	alipayTimeLayout  = "2006-01-02 15:04:05"
	alipayPhoneCall   = "my.getPhoneNumber"
	// alipayMinKeyBits is the smallest RSA key New accepts: RSA2 keys are
	// 2048 bits.
	alipayMinKeyBits = 2048
	// maxAlipayPhoneLen caps the phone response PhoneNumber accepts; a
	// real one is under 1 KB.
	maxAlipayPhoneLen = 16 << 10
	// maxAlipayCodeLen caps AlipayError's Code and SubCode.
	maxAlipayCodeLen = 64
	// alipayPhoneBinding is how long a phone number verified by Alipay
	// stays bound to the Alipay user of the app who last logged in with
	// it (see claimAlipayPhone): 90 days, the time a cancelled number is
	// frozen before a Chinese carrier hands it to someone else, so that
	// a recycled number is free again by the time its new owner has it.
	alipayPhoneBinding = 90 * 24 * time.Hour
	// alipayPhoneLabel is the HKDF info label of the key that hides the
	// numbers and users in the bindings' Redis keys; the AppID follows.
	alipayPhoneLabel = "mpauthx alipay phone v1\x00"
)

// alipayZone is the time zone of the gateway's timestamp parameter:
// Beijing time, UTC+8.
var alipayZone = time.FixedZone("UTC+8", 8*60*60)

// ErrAlipaySignature is wrapped by the error of an Alipay reply, or of a
// my.getPhoneNumber response, that is unsigned or whose signature does not
// verify with Config.AlipayPublicKey: a wrong AlipayPublicKey (the app's
// own public key pasted by mistake, or a key of another app or of the
// sandbox), or a reply that Alipay did not send.
var ErrAlipaySignature = errors.New("mpauthx: Alipay's signature is missing or does not verify")

// ErrAlipayPhoneClaimed is wrapped by the StatusPhoneNumberError of an
// Alipay phone login (AuthorizePhone) whose number another Alipay user
// of the app logged in with during the last 90 days: a response of
// my.getPhoneNumber names no user and never expires, so a leaked one
// would otherwise record the number on its holder's account
// (docs/alipay.md).
var ErrAlipayPhoneClaimed = errors.New("mpauthx: this phone number was verified for another Alipay user of the app")

// AlipayError is an error answered by Alipay: by the gateway or by
// alipay.system.oauth.token (in its signed or unsigned error_response), or
// inside a my.getPhoneNumber response. The Client returns it wrapped in an
// *Error with code StatusSessionKeyRequestError (a login) or
// StatusPhoneNumberError (a phone number); find it with errors.As.
//
// Alipay's codes are strings. Code is the gateway's: "20000" service
// unavailable, "20001" the app's authorisation, "40001" a missing
// parameter, "40002" an invalid parameter, "40004" the business failed,
// "40006" insufficient permissions. SubCode says more: for a login
// "isv.code-invalid" (the auth code is unknown, used, expired or another
// app's), "isv.invalid-signature" (Alipay does not know the app's public
// key: see docs/alipay.md), "isv.invalid-app-id"; for a phone number
// "isv.invalid-auth-relations" (the user did not authorise it),
// "isv.missing-encrypt-key".
type AlipayError struct {
	Code    string // such as "40002"
	Msg     string // such as "Invalid Arguments"
	SubCode string // such as "isv.code-invalid"; "" when absent
	SubMsg  string // Alipay's explanation, often in Chinese; "" when absent
}

// Error returns "alipay: code 40002 (Invalid Arguments): isv.code-invalid
// (<sub_msg>)", leaving out what is empty.
func (e *AlipayError) Error() string {
	s := "alipay: code " + e.Code
	if e.Msg != "" {
		s += " (" + e.Msg + ")"
	}
	if e.SubCode != "" {
		s += ": " + e.SubCode
		if e.SubMsg != "" {
			s += " (" + e.SubMsg + ")"
		}
	}
	return s
}

// newAlipayError is the *AlipayError of a reply's fields, with secrets
// (the request's auth code) removed and each field cut to a sane length
// and made valid UTF-8.
func newAlipayError(code, msg, subCode, subMsg string, secrets ...string) *AlipayError {
	h := newHidden(secrets...)
	clean := func(s string, n int) string {
		s = h.redact(s)
		if len(s) > n {
			s = s[:n]
		}
		return strings.ToValidUTF8(s, "?")
	}
	return &AlipayError{
		Code:    clean(code, maxAlipayCodeLen),
		Msg:     clean(msg, maxErrMsgLen),
		SubCode: clean(subCode, maxAlipayCodeLen),
		SubMsg:  clean(subMsg, maxErrMsgLen),
	}
}

// checkAlipayKeys checks an Alipay app's keys beyond their syntax: RSA2
// keys of 2048 bits at least, and Alipay's public key that is not the
// app's own (the usual mistake, since the console shows both). Its errors
// name the field and never quote a key.
func checkAlipayKeys(key *rsa.PrivateKey, pub *rsa.PublicKey) error {
	switch {
	case key.N.BitLen() < alipayMinKeyBits:
		return errors.New("mpauthx: Config.PrivateKey must be an RSA key of at least 2048 bits (RSA2)")
	case pub.N.BitLen() < alipayMinKeyBits:
		return errors.New("mpauthx: Config.AlipayPublicKey must be an RSA key of at least 2048 bits (RSA2)")
	case key.PublicKey.Equal(pub):
		return errors.New("mpauthx: Config.AlipayPublicKey is the app's own public key: it must be Alipay's public key (支付宝公钥), shown in the console beside the app's")
	}
	return nil
}

// alipayTokenParams are the parameters of alipay.system.oauth.token for
// an auth code, at now (sent as Beijing time), without the sign.
func alipayTokenParams(appID, code string, now time.Time) map[string]string {
	return map[string]string{
		"app_id":     appID,
		"method":     alipayTokenMethod,
		"format":     "JSON",
		"charset":    "utf-8",
		"sign_type":  "RSA2",
		"timestamp":  now.In(alipayZone).Format(alipayTimeLayout),
		"version":    "1.0",
		"grant_type": "authorization_code",
		"code":       code,
	}
}

// alipaySignContent is the string Alipay's gateway verifies a request's
// sign over: every parameter but sign whose value is not empty, as
// key=value with raw (not URL-encoded) values, sorted by key in byte
// order and joined by '&'. sign_type is included.
func alipaySignContent(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if k != "sign" && v != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// alipaySign is the RSA2 signature of content: RSA PKCS#1 v1.5 over its
// SHA-256, in standard base64.
func alipaySign(key *rsa.PrivateKey, content []byte) (string, error) {
	h := sha256.Sum256(content)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// alipayVerify reports whether sign (standard base64) is pub's RSA2
// signature of content.
func alipayVerify(pub *rsa.PublicKey, content []byte, sign string) bool {
	sig, err := base64.StdEncoding.DecodeString(sign)
	if err != nil || len(sig) == 0 {
		return false
	}
	h := sha256.Sum256(content)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
}

// alipayReply is a gateway reply cut into the parts its signature
// concerns.
type alipayReply struct {
	member string // the response member found: the method's root or alipayErrorRoot
	raw    []byte // its value, the bytes as received (a sub-slice of the body)
	sign   string // the sign member's value; "" when absent
	signed bool   // whether the reply has a sign member
}

// errAlipayReplyShape is the cause of a reply that is JSON but not a
// gateway reply.
var errAlipayReplyShape = errors.New("not an Alipay gateway reply")

// splitAlipayReply finds, in a gateway reply to the method whose response
// member is root, that member (or else error_response) and the sign.
// raw is the member's value exactly as received, `\/` escapes and all:
// the bytes the signature covers. The reply must be one JSON object with
// one of the two members, at most once each, and a sign, if any, that is
// a string; other members (alipay_cert_sn) are ignored. Failures are
// *Errors: StatusResponseIsNull for an empty body, StatusJSONParseError
// for anything else.
func splitAlipayReply(body []byte, root string) (alipayReply, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return alipayReply{}, newError(StatusResponseIsNull, "Alipay's reply is empty", nil)
	}
	bad := func() (alipayReply, error) {
		return alipayReply{}, newError(StatusJSONParseError, "Alipay's reply is not a gateway reply", errAlipayReplyShape)
	}
	var r, e alipayReply
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad()
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad()
		}
		key, _ := tok.(string) // a member's name is always a string
		start := dec.InputOffset()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return bad()
		}
		switch key {
		case root, alipayErrorRoot:
			p := &r
			if key == alipayErrorRoot {
				p = &e
			}
			if p.raw != nil {
				return bad()
			}
			// The value as it stands in the body: v is a copy of it.
			i := bytes.Index(body[start:], v)
			if i < 0 {
				return bad()
			}
			p.member, p.raw = key, body[start+int64(i):start+int64(i)+int64(len(v))]
		case "sign":
			if r.signed || json.Unmarshal(v, &r.sign) != nil {
				return bad()
			}
			r.signed = true
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return bad()
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad() // something after the object
	}
	switch {
	case r.raw != nil && e.raw != nil:
		return bad()
	case r.raw == nil && e.raw == nil:
		return alipayReply{}, newError(StatusSessionKeyRequestError, "Alipay's reply lacks "+root, errAlipayReplyShape)
	case r.raw == nil:
		r.member, r.raw = e.member, e.raw
	}
	return r, nil
}

// verifiedSource returns the bytes of the reply's member that Alipay
// signed: raw itself when sign verifies over it; otherwise, when raw holds
// `\/`, raw with every `\/` read as `/` if sign verifies over that. The
// second form is the fallback of Alipay's Java SDK
// (DefaultAlipayClient.checkResponseSign), kept because some replies are
// signed before their slashes are escaped. The caller parses the bytes
// returned, so what it reads is always exactly what Alipay signed.
func verifiedSource(pub *rsa.PublicKey, raw []byte, sign string) ([]byte, bool) {
	if alipayVerify(pub, raw, sign) {
		return raw, true
	}
	if bytes.Contains(raw, []byte(`\/`)) {
		alt := bytes.ReplaceAll(raw, []byte(`\/`), []byte(`/`))
		if alipayVerify(pub, alt, sign) {
			return alt, true
		}
	}
	return nil, false
}

// alipayVerified is the signature check of a split reply: the signed
// bytes of its member. A success (the method's member) must be signed;
// an error_response is verified when it carries a sign, and an unsigned
// one (the gateway's own errors, such as an unknown app_id) is returned
// as it is, since it can only make the call fail. Failures wrap
// ErrAlipaySignature.
func alipayVerified(pub *rsa.PublicKey, r alipayReply) ([]byte, error) {
	if !r.signed {
		if r.member == alipayErrorRoot {
			return r.raw, nil
		}
		return nil, newError(StatusSessionKeyRequestError, "Alipay's reply is not signed", ErrAlipaySignature)
	}
	src, ok := verifiedSource(pub, r.raw, r.sign)
	if !ok {
		return nil, newError(StatusSessionKeyRequestError, "Alipay's signature does not verify", ErrAlipaySignature)
	}
	return src, nil
}

// alipayTokenReply is the member of an alipay.system.oauth.token reply.
// A success has no code; an error has code, msg, sub_code and sub_msg.
// access_token, refresh_token and their lifetimes are not read: mpauthx
// does not call Alipay on the user's behalf.
type alipayTokenReply struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code"`
	SubMsg  string `json:"sub_msg"`
	UserID  string `json:"user_id"` // older apps (UserID mode): 2088 and 12 digits
	OpenID  string `json:"open_id"` // apps in OpenID mode (every new app since 2023-24)
}

// alipayUser is the person an auth code belongs to.
type alipayUser struct {
	id    string // the app's ID for the person
	field string // the reply's field it came from: "open_id" or "user_id"
}

// parseAlipayTokenReply parses and verifies, with Alipay's public key
// pub, the gateway's reply to alipay.system.oauth.token. It returns the
// person's open_id, or their user_id when the reply has no open_id (an
// app in UserID mode). Failures are an *Error (empty, malformed, unsigned
// or mis-signed reply, no usable ID) or an *AlipayError for an error
// answer, made with secrets (the auth code) removed.
func parseAlipayTokenReply(body []byte, pub *rsa.PublicKey, secrets ...string) (alipayUser, error) {
	r, err := splitAlipayReply(body, alipayTokenRoot)
	if err != nil {
		return alipayUser{}, err
	}
	src, err := alipayVerified(pub, r)
	if err != nil {
		return alipayUser{}, err
	}
	return readAlipayTokenMember(r.member, src, secrets...)
}

// readAlipayTokenMember reads the verified value src of an
// alipay.system.oauth.token reply's member (its root, or error_response),
// as parseAlipayTokenReply returns it.
func readAlipayTokenMember(member string, src []byte, secrets ...string) (alipayUser, error) {
	var t alipayTokenReply
	if err := json.Unmarshal(src, &t); err != nil {
		return alipayUser{}, newError(StatusJSONParseError, "Alipay's "+member+" is not the expected object", nil)
	}
	if member == alipayErrorRoot || (t.Code != "" && t.Code != alipayCodeOK) {
		if t.Code == "" {
			t.Code = "?"
		}
		return alipayUser{}, newAlipayError(t.Code, t.Msg, t.SubCode, t.SubMsg, secrets...)
	}
	u := alipayUser{id: t.OpenID, field: "open_id"}
	if u.id == "" {
		u = alipayUser{id: t.UserID, field: "user_id"}
	}
	switch {
	case u.id == "":
		return alipayUser{}, newError(StatusSessionKeyRequestError, "Alipay's reply lacks open_id and user_id", nil)
	case !validUserID(u.id):
		return alipayUser{}, newError(StatusSessionKeyRequestError, "Alipay's reply has an unusable "+u.field, nil)
	}
	return u, nil
}

// alipayPhoneEnvelope is my.getPhoneNumber's res.response, as the mini
// program received it.
type alipayPhoneEnvelope struct {
	Response    json.RawMessage `json:"response"`
	Sign        string          `json:"sign"`
	SignType    string          `json:"sign_type"`
	EncryptType string          `json:"encrypt_type"`
}

// alipayPhonePlain is a phone response's decrypted content. Its error
// fields are camelCase, unlike the gateway's; both spellings are read.
type alipayPhonePlain struct {
	Code     string `json:"code"`
	Msg      string `json:"msg"`
	Mobile   string `json:"mobile"`
	SubCode  string `json:"subCode"`
	SubMsg   string `json:"subMsg"`
	SubCode2 string `json:"sub_code"`
	SubMsg2  string `json:"sub_msg"`
}

// Causes of an unusable phone response.
var (
	errAlipayPhoneShape     = errors.New("not a my.getPhoneNumber response")
	errAlipayPhoneClear     = errors.New("the phone response is not encrypted (AES)")
	errAlipayPhoneUndecrypt = errors.New("the phone response does not decrypt with Config.AESKey")
)

// parseAlipayPhone verifies and decrypts my.getPhoneNumber's response,
// the whole res.response string: Alipay's RSA2 signature (pub) covers the
// ciphertext in quotes, which is AES-CBC with aesKey, a zero IV and
// PKCS#7 padding. It returns the mobile number. Failures are *Errors with
// code StatusPhoneNumberError (wrapping ErrAlipaySignature when unsigned
// or mis-signed) or an *AlipayError for an error inside the response.
// The signature is checked before anything is decrypted.
func parseAlipayPhone(response string, pub *rsa.PublicKey, aesKey []byte) (string, error) {
	shape := func(cause error) (string, error) {
		return "", newError(StatusPhoneNumberError, "the phone response is not one of my.getPhoneNumber", cause)
	}
	if len(response) > maxAlipayPhoneLen {
		return shape(errAlipayPhoneShape)
	}
	var env alipayPhoneEnvelope
	if err := json.Unmarshal([]byte(response), &env); err != nil || len(env.Response) == 0 {
		return shape(errAlipayPhoneShape)
	}
	var content string
	if env.Response[0] != '"' || json.Unmarshal(env.Response, &content) != nil || strings.HasPrefix(content, "{") ||
		(env.EncryptType != "" && env.EncryptType != "AES") {
		return shape(errAlipayPhoneClear)
	}
	if env.SignType != "" && env.SignType != "RSA2" {
		return "", newError(StatusPhoneNumberError, "the phone response is not signed RSA2", ErrAlipaySignature)
	}
	if env.Sign == "" {
		return "", newError(StatusPhoneNumberError, "the phone response is not signed", ErrAlipaySignature)
	}
	if !alipayVerify(pub, []byte(`"`+content+`"`), env.Sign) {
		return "", newError(StatusPhoneNumberError, "the phone response's signature does not verify", ErrAlipaySignature)
	}
	plain, err := decryptAlipay(aesKey, content)
	if err != nil {
		return "", newError(StatusPhoneNumberError, "the phone response does not decrypt", err)
	}
	return readAlipayPhonePlain(plain)
}

// readAlipayPhonePlain reads the decrypted content of a phone response,
// as parseAlipayPhone returns it.
func readAlipayPhonePlain(plain []byte) (string, error) {
	var p alipayPhonePlain
	if err := json.Unmarshal(plain, &p); err != nil {
		return "", newError(StatusPhoneNumberError, "the phone response does not decrypt", errAlipayPhoneUndecrypt)
	}
	if p.Code != alipayCodeOK {
		if p.SubCode == "" {
			p.SubCode, p.SubMsg = p.SubCode2, p.SubMsg2
		}
		if p.Code == "" {
			p.Code = "?"
		}
		return "", newAlipayError(p.Code, p.Msg, p.SubCode, p.SubMsg)
	}
	switch {
	case p.Mobile == "":
		return "", newError(StatusPhoneNumberError, "the Alipay account has no phone number", nil)
	case !validPhoneField(p.Mobile, false):
		return "", newError(StatusPhoneNumberError, "the phone response has an unusable mobile", nil)
	}
	return p.Mobile, nil
}

// decryptAlipay undoes Alipay's content encryption: AES-CBC with key, a
// zero IV and PKCS#7 padding, of the standard base64 b64.
func decryptAlipay(key []byte, b64 string) ([]byte, error) {
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, errAlipayPhoneUndecrypt
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errAlipayPhoneUndecrypt
	}
	cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(data, data)
	plain, err := unpad(data)
	if err != nil {
		return nil, errAlipayPhoneUndecrypt
	}
	return plain, nil
}

// alipayLogin exchanges an auth code of my.getAuthCode for the person's
// ID in the app. Every failure is an *Error with code
// StatusSessionKeyRequestError wrapping the cause: an *Error with a more
// precise code for HTTP faults and malformed replies, ErrAlipaySignature,
// an *AlipayError, or ctx.Err(). Alipay gives no session key and no
// unionid.
func (c *Client) alipayLogin(ctx context.Context, code string) (session, error) {
	body, err := c.alipayPost(ctx, code)
	if err == nil {
		var u alipayUser
		if u, err = parseAlipayTokenReply(body, c.alipayKey, code); err == nil {
			return session{openID: u.id}, nil
		}
	}
	return session{}, alipayAPIError(StatusSessionKeyRequestError, alipayTokenMethod, err)
}

// alipayPost makes the alipay.system.oauth.token request for code and
// returns the body of its 200 answer (at most maxBodyBytes). Its failures
// are *Errors with the HTTP status codes (6002, 6005, 6006), never
// holding the code.
func (c *Client) alipayPost(ctx context.Context, code string) ([]byte, error) {
	gateway := c.alipayURL
	params := alipayTokenParams(c.appID, code, c.now())
	sign, err := alipaySign(c.privateKey, []byte(alipaySignContent(params)))
	if err != nil {
		return nil, newError(StatusHTTPRequestError, "cannot sign the request", nil)
	}
	form := make(url.Values, len(params)+1)
	for k, v := range params {
		form.Set(k, v)
	}
	form.Set("sign", sign)
	hide := []string{code}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, newError(StatusHTTPRequestError, "cannot build the request", c.redactAPI(err, gateway, hide))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, newError(StatusHTTPRequestError, "request failed", c.redactAPI(err, gateway, hide))
	}
	return c.readReply(resp, gateway, hide)
}

// alipayPhone reads the phone number of a my.getPhoneNumber response for
// PhoneNumber and AuthorizePhone: failures are StatusPhoneNumberError
// wrapping the cause. For a login (openID, the Alipay ID of the person
// logging in, is not ""), the number must be free or already this
// person's (claimAlipayPhone).
func (c *Client) alipayPhone(ctx context.Context, response, openID string) (Phone, error) {
	if c.aesKey == nil {
		return Phone{}, newError(StatusPhoneNumberError, "Config.AESKey is not set: it decrypts my.getPhoneNumber", nil)
	}
	mobile, err := parseAlipayPhone(response, c.alipayKey, c.aesKey)
	if err != nil {
		return Phone{}, alipayAPIError(StatusPhoneNumberError, alipayPhoneCall, err)
	}
	if openID != "" {
		if err := c.claimAlipayPhone(ctx, mobile, openID); err != nil {
			return Phone{}, err
		}
	}
	return Phone{PhoneNumber: mobile, PurePhoneNumber: mobile}, nil
}

// alipayPhoneKey derives the key that hides the numbers and users of an
// Alipay app's phone bindings from its AES content key, the secret that
// already guards those numbers.
func alipayPhoneKey(aesKey []byte, appID string) []byte {
	key, err := hkdf.Key(sha256.New, aesKey, nil, alipayPhoneLabel+appID, 32)
	if err != nil { // unreachable: 32 bytes is far below HKDF-SHA256's limit
		panic("mpauthx: hkdf: " + err.Error())
	}
	return key
}

// claimAlipayPhone binds mobile, just verified by Alipay, to openID, the
// Alipay user of the app logging in with it, for alipayPhoneBinding from
// now: it fails with StatusPhoneNumberError wrapping
// ErrAlipayPhoneClaimed when another user of the app holds the number.
//
// A my.getPhoneNumber response names no user and carries no time, and is
// the same string each time for one number (a zero IV, a deterministic
// signature): whoever saw it once (a log, a proxy) could replay it with
// their own auth code forever and have the victim's number recorded on
// their account (and, with LinkByPhone, reach the victim's). Accepting a
// response only once would lock its owner out of their next phone
// login, since their next response is the same string; so the number is
// bound to its first user instead, renewed at each of their phone
// logins, on every instance. One key per number, under
// mpauthx:alipay_phone:<appid>:, whose name and value are keyed hashes
// (neither the number nor the open_id is readable in Redis); one round
// trip, one key, so Cluster-safe. Redis failing is StatusDatabaseError:
// the login cannot go on without Redis anyway.
func (c *Client) claimAlipayPhone(ctx context.Context, mobile, openID string) error {
	mac := hmac.New(sha256.New, c.alipayPhoneKey)
	mac.Write([]byte("mobile\x00" + mobile))
	key := keyPrefix + "alipay_phone:" + c.appID + ":" + hex.EncodeToString(mac.Sum(nil)[:16])
	mac.Reset()
	mac.Write([]byte("user\x00" + openID))
	holder := hex.EncodeToString(mac.Sum(nil)[:16])
	var ok bool
	err := await(ctx, func() (err error) {
		ok, err = claimScript.Run(ctx, c.rdb, []string{key}, holder, alipayPhoneBinding.Milliseconds()).Bool()
		return err
	})
	if err != nil {
		return c.storageError(ctx, "binding the phone number failed", err)
	}
	if !ok {
		return newError(StatusPhoneNumberError, StatusPhoneNumberError.Message()+": "+alipayPhoneCall+": the number was verified for another Alipay user", ErrAlipayPhoneClaimed)
	}
	return nil
}

// alipayAPIError wraps the failure of an Alipay call name in an *Error
// with code, as apiError does for WeChat's: an *AlipayError's code and
// sub-code are named in the message.
func alipayAPIError(code StatusCode, name string, cause error) *Error {
	var ae *AlipayError
	if errors.As(cause, &ae) {
		msg := code.Message() + ": " + name + ": Alipay code " + ae.Code
		if ae.SubCode != "" {
			msg += " (" + ae.SubCode + ")"
		}
		return newError(code, msg, cause)
	}
	return apiError(code, name, cause)
}

// alipayCodeRefused reports whether err is Alipay refusing an auth code
// (unknown, used, expired or another app's): the user's mistake, or a
// login button tapped twice, logged at Info like WeChat's 40029 and 40163.
func alipayCodeRefused(err error) bool {
	var ae *AlipayError
	return errors.As(err, &ae) && ae.SubCode == "isv.code-invalid"
}
