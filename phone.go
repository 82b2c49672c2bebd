package mpauthx

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
)

// Phone is a user's phone number, as WeChat's getuserphonenumber gives it.
type Phone struct {
	PhoneNumber     string `json:"phoneNumber"`     // with the country code for foreign numbers
	PurePhoneNumber string `json:"purePhoneNumber"` // without it
	CountryCode     string `json:"countryCode"`     // such as "86"
}

// phoneRequest is getuserphonenumber's JSON body.
type phoneRequest struct {
	Code   string `json:"code"`
	OpenID string `json:"openid,omitempty"`
}

// phoneReply is getuserphonenumber's JSON reply.
type phoneReply struct {
	ErrCode   int    `json:"errcode"`
	ErrMsg    string `json:"errmsg"`
	PhoneInfo *struct {
		Phone
		Watermark Watermark `json:"watermark"`
	} `json:"phone_info"`
}

// maxPhoneLen caps each field of a phone number from WeChat.
const maxPhoneLen = 32

// PhoneNumber exchanges a getPhoneNumber code.
//
// phoneCode is the one-time code (valid 5 minutes) the mini program gets
// from a <button open-type="getPhoneNumber">. The exchange takes the app's
// access token (see AccessToken), renewed once if WeChat rejects it.
// Failures are StatusPhoneNumberError wrapping the cause (a *WeChatError
// for an errcode, such as 40029 for an invalid or used code), also when
// the reply's watermark names another app or no app; StatusAccessTokenError
// when no access token can be had. Use AuthorizePhone to log the user in
// with it.
//
// PhoneNumber knows no user: the number is that of whoever the code came
// from. Where the caller knows the user (a handler behind Middleware),
// PhoneNumberOf has WeChat check that the code is theirs.
//
// On Alipay, phoneCode is the whole res.response string of
// my.getPhoneNumber: it is verified with Config.AlipayPublicKey and
// decrypted with Config.AESKey, without a call to Alipay; a refused
// signature wraps ErrAlipaySignature, an error inside the response is an
// *AlipayError, and CountryCode is "" (Alipay gives none). See
// docs/alipay.md.
func (c *Client) PhoneNumber(ctx context.Context, phoneCode string) (Phone, error) {
	if err := c.checkOpen(); err != nil {
		return Phone{}, err
	}
	if err := c.supports(callPhone); err != nil {
		c.logFailure(ctx, err)
		return Phone{}, err
	}
	if err := required("phoneCode", phoneCode); err != nil {
		return Phone{}, err
	}
	p, err := c.phone(ctx, phoneCode, "")
	if err != nil {
		c.logFailure(ctx, err)
		return Phone{}, err
	}
	return p, nil
}

// PhoneNumberOf is PhoneNumber for the logged-in user userID (the user ID
// of their token, as Middleware puts it in the request's context): it
// sends WeChat the openid of the user's latest login, which has WeChat
// check that phoneCode is that user's, as AuthorizePhone does. A code
// another WeChat user's button gave fails with StatusPhoneNumberError
// wrapping a *WeChatError with ErrCodeInvalidOpenID. The openid is kept
// sealed beside the user's session key for as long as their token lives:
// without it (the token expired or was revoked, or the user has not
// logged in for this Sku) PhoneNumberOf fails with StatusSessionKeyMissing
// and calls no WeChat API; the user must log in again. Other failures are
// PhoneNumber's. It records nothing: AuthorizePhone stores the number.
// It exists on a WeChat mini program only (StatusUnsupported elsewhere).
func (c *Client) PhoneNumberOf(ctx context.Context, userID, phoneCode string) (Phone, error) {
	if err := c.checkOpen(); err != nil {
		return Phone{}, err
	}
	if c.platform != WeChatMiniProgram {
		// Only WeChat's getuserphonenumber takes the openid to check.
		return Phone{}, errUnsupported(c.platform, "PhoneNumberOf")
	}
	if err := required("userID", userID, "phoneCode", phoneCode); err != nil {
		return Phone{}, err
	}
	openID, _, err := c.loadSessionKey(ctx, userID)
	if err == nil {
		var p Phone
		if p, err = c.phoneNumber(ctx, phoneCode, openID); err == nil {
			return p, nil
		}
	}
	c.logFailure(ctx, err)
	return Phone{}, err
}

// phoneNumber exchanges phoneCode, checked by WeChat to be openID's when
// openID is not empty.
func (c *Client) phoneNumber(ctx context.Context, phoneCode, openID string) (Phone, error) {
	body, _ := json.Marshal(phoneRequest{Code: phoneCode, OpenID: openID})
	var p Phone
	err := c.withAccessToken(ctx, StatusPhoneNumberError, "getuserphonenumber", func(token string) error {
		reply, err := c.callAPI(ctx, http.MethodPost, c.phoneURL+"?access_token="+url.QueryEscape(token), body, token, phoneCode)
		if err != nil {
			return err
		}
		var appID string
		p, appID, err = parsePhoneReply(reply)
		if err != nil {
			return c.cleanWeChatError(err, token, phoneCode)
		}
		// A watermark without an appid is no proof either.
		if appID == "" || subtle.ConstantTimeCompare([]byte(appID), []byte(c.appID)) != 1 {
			return newError(StatusPhoneNumberError, "the phone number is not for this app", errWatermark)
		}
		return nil
	})
	return p, err
}

// parsePhoneReply parses getuserphonenumber's body and returns the phone
// and its watermark's appid: an *Error (empty, not JSON, no usable phone)
// or a *WeChatError for an errcode.
func parsePhoneReply(body []byte) (Phone, string, error) {
	var r phoneReply
	if err := decodeReply(body, "getuserphonenumber", &r); err != nil {
		return Phone{}, "", err
	}
	if r.ErrCode != 0 {
		return Phone{}, "", &WeChatError{ErrCode: r.ErrCode, ErrMsg: r.ErrMsg}
	}
	if r.PhoneInfo == nil {
		return Phone{}, "", newError(StatusPhoneNumberError, "getuserphonenumber reply lacks phone_info", nil)
	}
	p := r.PhoneInfo.Phone
	if !validPhoneField(p.PurePhoneNumber, false) || !validPhoneField(p.PhoneNumber, true) || !validPhoneField(p.CountryCode, true) {
		return Phone{}, "", newError(StatusPhoneNumberError, "getuserphonenumber reply has an unusable phone number", nil)
	}
	return p, r.PhoneInfo.Watermark.AppID, nil
}

// validPhoneField reports whether s is a phone number field as WeChat
// sends it: 1 to maxPhoneLen digits, with a leading '+' when plus is set
// (the number with its country code).
func validPhoneField(s string, plus bool) bool {
	if plus && len(s) > 1 && s[0] == '+' {
		s = s[1:]
	}
	if s == "" || len(s) > maxPhoneLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// AuthorizePhone logs in like AuthorizeCode and records the phone number.
//
// loginCode is the code of wx.login, phoneCode the one of a
// <button open-type="getPhoneNumber">, sent together by the mini program.
// AuthorizePhone exchanges loginCode with code2session (failures are
// StatusSessionKeyRequestError), then phoneCode for the user's phone
// number, which WeChat checks is this user's (StatusPhoneNumberError;
// Douyin's API has no such check, see docs/platforms.md),
// records it (PurePhoneNumber) on the user's row, adding the row if
// missing, and returns the user's token, shared as in Authorize. The
// user ID is the same whichever login the user used first. On failure
// the Result is ErrorResult(err), ready to be sent.
//
// An empty code is StatusRequiredParamsMissing whose message names the
// field as the mini program sends it (see the README's handler): "code is
// required" for loginCode, "phoneCode is required" for phoneCode.
//
// On Alipay, loginCode is my.getAuthCode's auth code and phoneCode the
// response of my.getPhoneNumber, as for PhoneNumber. Alipay's response
// names no user, so nothing checks that the number is the logged-in
// user's: docs/alipay.md says what that means for LinkByPhone.
func (c *Client) AuthorizePhone(ctx context.Context, loginCode, phoneCode string) (_ Result, err error) {
	defer c.trackLogin(&ctx, "AuthorizePhone")(&err)
	if err := c.checkOpen(); err != nil {
		return c.fail(ctx, err)
	}
	if err := c.supports(callPhone); err != nil {
		return c.fail(ctx, err)
	}
	if err := required("code", loginCode, "phoneCode", phoneCode); err != nil {
		return c.fail(ctx, err)
	}
	s, err := c.exchange(ctx, loginCode)
	if err != nil {
		return c.fail(ctx, err)
	}
	p, err := c.phone(ctx, phoneCode, s.openID)
	if err != nil {
		return c.fail(ctx, err)
	}
	userID, err := c.store.login(ctx, c.identity(s.openID, s.unionID), nil, p.PurePhoneNumber)
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "saving the user failed", err))
	}
	return c.issue(ctx, userID, s)
}
