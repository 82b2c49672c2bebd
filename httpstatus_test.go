package mpauthx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
)

func TestHTTPStatus(t *testing.T) {
	e := func(code mpauthx.StatusCode, cause error) error {
		return &mpauthx.Error{Code: code, Message: code.Message(), Err: cause}
	}
	we := func(errcode int) error { return &mpauthx.WeChatError{ErrCode: errcode, ErrMsg: "x"} }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 200},
		{"an *Error with StatusSuccess", e(mpauthx.StatusSuccess, nil), 200},
		{"6001 missing argument", e(mpauthx.StatusRequiredParamsMissing, nil), 400},
		{"6009 openid mismatch", e(mpauthx.StatusOpenIDMismatch, nil), 400},
		{"6011 decrypt error", e(mpauthx.StatusDecryptError, nil), 400},
		{"6007 invalid token", e(mpauthx.StatusInvalidAccessToken, nil), 401},
		{"6014 session key missing", e(mpauthx.StatusSessionKeyMissing, nil), 401},
		{"6008 around 40029 invalid code", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeInvalidCode)), 401},
		{"6008 around 40163 used code", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeCodeUsed)), 401},
		{"6013 around 40029 invalid phone code", e(mpauthx.StatusPhoneNumberError, we(mpauthx.ErrCodeInvalidCode)), 401},
		{"6013 around 40163", e(mpauthx.StatusPhoneNumberError, we(mpauthx.ErrCodeCodeUsed)), 401},
		{"6013 around 40003 phone code of another user", e(mpauthx.StatusPhoneNumberError, we(40003)), 401},
		{"6008 around 40003", e(mpauthx.StatusSessionKeyRequestError, we(40003)), 502},
		{"6008 around 40226 high-risk user", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeHighRiskUser)), 403},
		{"6013 around 40226", e(mpauthx.StatusPhoneNumberError, we(mpauthx.ErrCodeHighRiskUser)), 502},
		{"6008 around 45011 rate limited", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeRateLimited)), 502},
		{"6008 around 40125 bad secret", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeInvalidSecret)), 502},
		{"6008 around an HTTP 500", e(mpauthx.StatusSessionKeyRequestError, e(mpauthx.StatusHTTPError, nil)), 502},
		{"6008 timed out", e(mpauthx.StatusSessionKeyRequestError, context.DeadlineExceeded), 502},
		{"6013 around a 6012", e(mpauthx.StatusPhoneNumberError, e(mpauthx.StatusAccessTokenError, nil)), 502},
		{"6002 around 40029 (CallAPI)", e(mpauthx.StatusHTTPError, we(mpauthx.ErrCodeInvalidCode)), 502},
		{"6002 HTTP error", e(mpauthx.StatusHTTPError, nil), 502},
		{"6003 empty reply", e(mpauthx.StatusResponseIsNull, nil), 502},
		{"6004 not JSON", e(mpauthx.StatusJSONParseError, nil), 502},
		{"6005 unreadable reply", e(mpauthx.StatusHTTPResponseError, nil), 502},
		{"6006 no connection", e(mpauthx.StatusHTTPRequestError, nil), 502},
		{"6012 no access token", e(mpauthx.StatusAccessTokenError, we(mpauthx.ErrCodeInvalidSecret)), 502},
		{"6010 no such user", e(mpauthx.StatusUserNotExist, nil), 404},
		{"6015 account conflict", e(mpauthx.StatusAccountConflict, nil), 409},
		{"6016 unsupported", e(mpauthx.StatusUnsupported, nil), 501},
		{"6000 database", e(mpauthx.StatusDatabaseError, context.DeadlineExceeded), 503},
		{"closed Client", e(mpauthx.StatusUnknownError, mpauthx.ErrClosed), 503},
		{"9999", e(mpauthx.StatusUnknownError, nil), 500},
		{"a foreign error", errors.New("boom"), 500},
		{"a bare *WeChatError", we(mpauthx.ErrCodeInvalidCode), 500},
		{"an unknown code", e(7777, nil), 500},
		{"6008 around 40029, wrapped by the caller", fmt.Errorf("login: %w", e(mpauthx.StatusSessionKeyRequestError, we(mpauthx.ErrCodeInvalidCode))), 401},
		{"6000, wrapped by the caller", fmt.Errorf("check: %w", e(mpauthx.StatusDatabaseError, nil)), 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mpauthx.HTTPStatus(tt.err); got != tt.want {
				t.Errorf("HTTPStatus(%v) = %d (%s), want %d", tt.err, got, http.StatusText(got), tt.want)
			}
		})
	}
}

// TestHTTPStatusOfCalls: the statuses of real failures, as the Client
// returns them.
func TestHTTPStatusOfCalls(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.user("hs")
	_, err := e.c.AuthorizeCode(bg, "")
	if got := mpauthx.HTTPStatus(err); got != 400 {
		t.Errorf("missing code: %d", got)
	}
	_, err = e.c.AuthorizeCode(bg, "no-such-code")
	if got := mpauthx.HTTPStatus(err); got != 401 {
		t.Errorf("unknown code: %d (%v)", got, err)
	}
	code := e.wx.Code(u.OpenID)
	if _, err := e.c.AuthorizeCode(bg, code); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.AuthorizeCode(bg, code)
	if got := mpauthx.HTTPStatus(err); got != 401 {
		t.Errorf("used code: %d (%v)", got, err)
	}
	_, err = e.c.RefreshToken(bg, "o-nobody")
	if got := mpauthx.HTTPStatus(err); got != 404 {
		t.Errorf("RefreshToken of nobody: %d (%v)", got, err)
	}
	e.mr.Close()
	_, err = e.c.IsTokenValid(bg, "o-x|"+e.cfg.Sku+"|ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	if got := mpauthx.HTTPStatus(err); got != 503 {
		t.Errorf("Redis down: %d (%v)", got, err)
	}
	e.mr.Restart()
	e.c.Close()
	_, err = e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
	if got := mpauthx.HTTPStatus(err); got != 503 {
		t.Errorf("after Close: %d (%v)", got, err)
	}
}

// TestMiddlewareContext: behind the Middleware, UserIDFromContext and
// OpenIDFromContext give the token's user ID and TokenFromContext the
// token itself, with which the handler logs the caller out; outside it,
// all three report false. A closed Client gets 503.
func TestMiddlewareContext(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.user("ctx")
	token := e.login(t, u)
	var gotID, gotOpenID, gotToken string
	h := e.c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ok1, ok2, ok3 bool
		gotID, ok1 = mpauthx.UserIDFromContext(r.Context())
		gotOpenID, ok2 = mpauthx.OpenIDFromContext(r.Context())
		gotToken, ok3 = mpauthx.TokenFromContext(r.Context())
		if !ok1 || !ok2 || !ok3 {
			t.Errorf("context: %v %v %v", ok1, ok2, ok3)
		}
		if err := e.c.RevokeToken(r.Context(), gotToken); err != nil {
			t.Error(err)
		}
	}))
	if rec := serveAuth(h, "bearer  "+token+" "); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if gotID != u.OpenID || gotOpenID != u.OpenID || gotToken != token {
		t.Errorf("user ID %q, openid %q, token %q; want %q and %q", gotID, gotOpenID, gotToken, u.OpenID, token)
	}
	if rec := serveAuth(h, "Bearer "+token); rec.Code != 401 {
		t.Errorf("revoked token: status %d, want 401", rec.Code)
	}
	for name, f := range map[string]func(context.Context) (string, bool){
		"UserIDFromContext": mpauthx.UserIDFromContext, "OpenIDFromContext": mpauthx.OpenIDFromContext, "TokenFromContext": mpauthx.TokenFromContext,
	} {
		if v, ok := f(bg); ok || v != "" {
			t.Errorf("%s outside the Middleware = %q, %v", name, v, ok)
		}
	}
	e.c.Close()
	if rec := serveAuth(h, "Bearer "+token); rec.Code != 503 {
		t.Errorf("closed Client: status %d, want 503", rec.Code)
	}
}

// TestHTTPStatusRefusedCodeEveryPlatform: a login or phone code the
// platform refuses is the caller's to renew on every platform, as on
// WeChat: 401, not 502 (it was 502 on Douyin and Alipay, so a login
// button tapped twice counted as the platform failing).
func TestHTTPStatusRefusedCodeEveryPlatform(t *testing.T) {
	e := func(code mpauthx.StatusCode, cause error) error {
		return &mpauthx.Error{Code: code, Message: code.Message(), Err: cause}
	}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"Douyin 6008 around err_no 40018", e(mpauthx.StatusSessionKeyRequestError, &mpauthx.DouyinError{ErrNo: mpauthx.DouyinErrBadCode}), 401},
		{"Douyin 6013 around err_no 40018", e(mpauthx.StatusPhoneNumberError, &mpauthx.DouyinError{ErrNo: mpauthx.DouyinErrBadCode}), 401},
		{"Douyin 6008 around another err_no", e(mpauthx.StatusSessionKeyRequestError, &mpauthx.DouyinError{ErrNo: mpauthx.DouyinErrSystem}), 502},
		{"Alipay 6008 around isv.code-invalid", e(mpauthx.StatusSessionKeyRequestError, &mpauthx.AlipayError{Code: "40002", SubCode: "isv.code-invalid"}), 401},
		{"Alipay 6013 around isv.code-invalid", e(mpauthx.StatusPhoneNumberError, &mpauthx.AlipayError{Code: "40002", SubCode: "isv.code-invalid"}), 401},
		{"Alipay 6008 around isv.invalid-signature", e(mpauthx.StatusSessionKeyRequestError, &mpauthx.AlipayError{Code: "40002", SubCode: "isv.invalid-signature"}), 502},
		{"Alipay 6012 around isv.code-invalid", e(mpauthx.StatusAccessTokenError, &mpauthx.AlipayError{Code: "40002", SubCode: "isv.code-invalid"}), 502},
	}
	for _, tt := range tests {
		if got := mpauthx.HTTPStatus(tt.err); got != tt.want {
			t.Errorf("%s: HTTPStatus = %d, want %d", tt.name, got, tt.want)
		}
	}
}
