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
// the reply's watermark names another app; StatusAccessTokenError when no
// access token can be had. Use AuthorizePhone to log the user in with it.
func (c *Client) PhoneNumber(ctx context.Context, phoneCode string) (Phone, error) {
	if err := c.checkOpen(); err != nil {
		return Phone{}, err
	}
	if err := required("phoneCode", phoneCode); err != nil {
		return Phone{}, err
	}
	p, err := c.phoneNumber(ctx, phoneCode, "")
	if err != nil {
		c.logFailure(ctx, err)
		return Phone{}, err
	}
	return p, nil
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
		if subtle.ConstantTimeCompare([]byte(appID), []byte(c.appID)) != 1 {
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
// number, which WeChat checks is this user's (StatusPhoneNumberError),
// records it (PurePhoneNumber) on the user's row, adding the row if
// missing, and returns the user's token, shared as in Authorize. The
// user ID is the same whichever login the user used first. On failure
// the Result is ErrorResult(err), ready to be sent.
func (c *Client) AuthorizePhone(ctx context.Context, loginCode, phoneCode string) (_ Result, err error) {
	defer c.trackLogin(&ctx, "AuthorizePhone")(&err)
	if err := c.checkOpen(); err != nil {
		return c.fail(ctx, err)
	}
	if err := required("loginCode", loginCode, "phoneCode", phoneCode); err != nil {
		return c.fail(ctx, err)
	}
	s, err := c.exchange(ctx, loginCode)
	if err != nil {
		return c.fail(ctx, err)
	}
	p, err := c.phoneNumber(ctx, phoneCode, s.openID)
	if err != nil {
		return c.fail(ctx, err)
	}
	userID, err := c.store.login(ctx, c.identity(s.openID, s.unionID), nil, p.PurePhoneNumber)
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "saving the user failed", err))
	}
	return c.issue(ctx, userID, s)
}
