package mpauthx_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// phoneUser registers a WeChat user with a phone number.
func (e *env) phoneUser(phone, countryCode string) mpauthxtest.User {
	return e.wx.AddUser(mpauthxtest.User{OpenID: "o-phone-" + rand.Text()[:10], Phone: phone, CountryCode: countryCode})
}

func TestPhoneNumber(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		cn := e.phoneUser("13800138000", "")
		us := e.phoneUser("2025550123", "1")
		used := e.wx.PhoneCode(cn.OpenID)
		if _, err := e.c.PhoneNumber(bg, used); err != nil {
			t.Fatalf("PhoneNumber: %v", err)
		}
		expired := e.wx.PhoneCode(cn.OpenID)
		e.wx.Advance(mpauthxtest.PhoneCodeLifetime + time.Second)
		otherApp := []byte(`{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"timestamp":1,"appid":"wx-other-app"}}}`)
		tests := []struct {
			name      string
			code      string
			fault     *mpauthxtest.Fault
			want      mpauthx.Phone
			wantCode  mpauthx.StatusCode
			wantInner mpauthx.StatusCode // the wrapped *Error's code, if any
			wantErr   int                // the wrapped errcode, if any
		}{
			{"china", e.wx.PhoneCode(cn.OpenID), nil, mpauthx.Phone{PhoneNumber: "13800138000", PurePhoneNumber: "13800138000", CountryCode: "86"}, mpauthx.StatusSuccess, 0, 0},
			{"foreign", e.wx.PhoneCode(us.OpenID), nil, mpauthx.Phone{PhoneNumber: "+12025550123", PurePhoneNumber: "2025550123", CountryCode: "1"}, mpauthx.StatusSuccess, 0, 0},
			{"used", used, nil, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0, mpauthxtest.ErrCodeInvalidCode},
			{"unknown", "p+nope", nil, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0, mpauthxtest.ErrCodeInvalidCode},
			{"expired", expired, nil, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0, mpauthxtest.ErrCodeInvalidCode},
			{"empty", "", nil, mpauthx.Phone{}, mpauthx.StatusRequiredParamsMissing, 0, 0},
			{"WeChat down", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{Status: 500}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, mpauthx.StatusHTTPError, 0},
			{"not JSON", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{Body: []byte("<html>busy</html>")}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, mpauthx.StatusJSONParseError, 0},
			{"empty body", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{Body: []byte{}}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, mpauthx.StatusResponseIsNull, 0},
			{"no phone_info", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{Body: []byte(`{"errcode":0}`)}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, mpauthx.StatusPhoneNumberError, 0},
			{"another app's watermark", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{Body: otherApp}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, mpauthx.StatusPhoneNumberError, 0},
			{"rate limited", e.wx.PhoneCode(cn.OpenID), &mpauthxtest.Fault{ErrCode: 45011}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0, 45011},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.fault != nil {
					e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, *tt.fault)
				}
				p, err := e.c.PhoneNumber(bg, tt.code)
				if mpauthx.Code(err) != tt.wantCode || p != tt.want {
					t.Fatalf("PhoneNumber = %+v, %v; want %+v with code %d", p, err, tt.want, tt.wantCode)
				}
				if tt.wantInner != 0 {
					var inner *mpauthx.Error
					if !errors.As(errors.Unwrap(err), &inner) || inner.Code != tt.wantInner {
						t.Errorf("err = %v, want a %d inside", err, tt.wantInner)
					}
				}
				var we *mpauthx.WeChatError
				if tt.wantErr != 0 && (!errors.As(err, &we) || we.ErrCode != tt.wantErr) {
					t.Errorf("err = %v, want errcode %d inside", err, tt.wantErr)
				}
			})
		}
		if n := e.wx.AccessTokenRequests(); n != 1 {
			t.Errorf("%d stable_token calls for %d exchanges, want 1", n, len(tests)+1)
		}
	})
}

// TestPhoneNumberTokenRejected: an access token WeChat no longer accepts
// is renewed once, and the exchange retried.
func TestPhoneNumberTokenRejected(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		accessToken(t, e.c)
		for _, code := range []int{mpauthx.ErrCodeInvalidAccessToken, mpauthx.ErrCodeAccessTokenExpired, mpauthx.ErrCodeMalformedAccessToken} {
			e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{ErrCode: code})
			e.rdb.Del(bg, e.appKey("force_spacing")) // Redis's 30 s between forced refreshes, without waiting
			e.wx.Advance(mpauthxtest.ForceRefreshSpacing)
			if p, err := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID)); err != nil || p.PurePhoneNumber != u.Phone {
				t.Errorf("PhoneNumber after errcode %d = %+v, %v; want the phone", code, p, err)
			}
		}
		if n := e.wx.ForcedRefreshes(); n != 3 {
			t.Errorf("%d forced refreshes, want 3", n)
		}
		// Rejected twice: one retry only.
		e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 2, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeInvalidAccessToken})
		e.rdb.Del(bg, e.appKey("force_spacing"))
		e.wx.Advance(mpauthxtest.ForceRefreshSpacing)
		_, err := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
		var we *mpauthx.WeChatError
		if mpauthx.Code(err) != mpauthx.StatusPhoneNumberError || !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeInvalidAccessToken {
			t.Errorf("PhoneNumber rejected twice = %v, want 6013 wrapping 40001", err)
		}
		// No access token at all: 6012.
		e.wx.ExpireAccessToken()
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Status: 502})
		_, err = e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError {
			t.Errorf("PhoneNumber without an access token = %v, want 6012", err)
		}
	})
}

func TestAuthorizePhone(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		res, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
		if err != nil || res.StatusCode != mpauthx.StatusSuccess {
			t.Fatalf("AuthorizePhone = %+v, %v", res, err)
		}
		if id := e.c.ExtractOpenID(res.Response); id != u.OpenID || !e.valid(t, res.Response) {
			t.Errorf("token of %q, valid %t; want a live token of %q", id, e.valid(t, res.Response), u.OpenID)
		}
		if got, err := e.c.User(bg, u.OpenID); err != nil || got.Phone != u.Phone || got.OpenID != u.OpenID {
			t.Errorf("User = %+v, %v; want the phone %s recorded", got, err, u.Phone)
		}
		// The same user, logging in with the code alone: the same token.
		res2, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil || res2.Response != res.Response {
			t.Errorf("AuthorizeCode after AuthorizePhone = %+v, %v; want the same token", res2, err)
		}

		other := e.phoneUser("13900139000", "")
		phoneCode := e.wx.PhoneCode(other.OpenID)
		tests := []struct {
			name     string
			login    string
			phone    string
			wantCode mpauthx.StatusCode
			wantErr  int
		}{
			{"no login code", "", phoneCode, mpauthx.StatusRequiredParamsMissing, 0},
			{"no phone code", e.wx.Code(u.OpenID), "", mpauthx.StatusRequiredParamsMissing, 0},
			{"bad login code", "c+nope", phoneCode, mpauthx.StatusSessionKeyRequestError, mpauthxtest.ErrCodeInvalidCode},
			{"another user's phone code", e.wx.Code(u.OpenID), phoneCode, mpauthx.StatusPhoneNumberError, mpauthxtest.ErrCodeInvalidOpenID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.c.AuthorizePhone(bg, tt.login, tt.phone)
				if mpauthx.Code(err) != tt.wantCode || res != mpauthx.ErrorResult(err) {
					t.Fatalf("AuthorizePhone = %+v, %v; want code %d", res, err, tt.wantCode)
				}
				var we *mpauthx.WeChatError
				if tt.wantErr != 0 && (!errors.As(err, &we) || we.ErrCode != tt.wantErr) {
					t.Errorf("err = %v, want errcode %d inside", err, tt.wantErr)
				}
			})
		}
		if _, err := e.c.User(bg, other.OpenID); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
			t.Errorf("after failed AuthorizePhone calls, User = %v; want no row", err)
		}
		// The phone code the failures did not use still works.
		res3, err := e.c.AuthorizePhone(bg, e.wx.Code(other.OpenID), phoneCode)
		if err != nil || e.c.ExtractOpenID(res3.Response) != other.OpenID {
			t.Errorf("AuthorizePhone of the other user = %+v, %v", res3, err)
		}
	})
}

// TestAuthorizePhoneIdentity: a user who logged in another way first keeps
// their user ID, whose row gets the phone number; a foreign number is
// recorded without its country code, as PurePhoneNumber.
func TestAuthorizePhoneIdentity(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.wx.AddUser(mpauthxtest.User{OpenID: "o-id-" + rand.Text()[:10], UnionID: "u-id-" + rand.Text()[:10],
			OmitUnionIDInSession: true, Phone: "2025550123", CountryCode: "1"})
		data, iv := e.wx.UserInfo(u.OpenID)
		res, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv) // the unionid from encryptedData
		if err != nil {
			t.Fatal(err)
		}
		id := e.c.ExtractOpenID(res.Response)
		if id != u.UnionID {
			t.Fatalf("Authorize's user ID = %q, want the unionid", id)
		}
		res2, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)) // code2session without unionid
		if err != nil || res2.Response != res.Response {
			t.Fatalf("AuthorizePhone = %+v, %v; want the same token", res2, err)
		}
		got, err := e.c.User(bg, id)
		if err != nil || got.Phone != "2025550123" || got.OpenID != u.OpenID || got.UnionID != u.UnionID {
			t.Errorf("User = %+v, %v", got, err)
		}
	})
}

// TestPhoneLoginHandler is the table test of mpauthxtest's package doc,
// run against Example_phoneLoginHandler's handler on every backend.
func TestPhoneLoginHandler(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		c, wx := e.c, e.wx
		wx.AddUser(mpauthxtest.User{OpenID: "o-bob", Phone: "13800138000"})
		used := wx.PhoneCode("o-bob")
		tests := []struct { // in order: "reused" reuses the phone code of "ok"
			name      string
			phoneCode string
			fault     *mpauthxtest.Fault // the next getuserphonenumber's answer
			wantHTTP  int
			wantCode  mpauthx.StatusCode
		}{
			{"ok", used, nil, 200, mpauthx.StatusSuccess},
			{"reused", used, nil, 401, mpauthx.StatusPhoneNumberError},
			{"missing", "", nil, 400, mpauthx.StatusRequiredParamsMissing},
			{"token ended", wx.PhoneCode("o-bob"), &mpauthxtest.Fault{ErrCode: 40001}, 200, mpauthx.StatusSuccess}, // renewed, retried
			{"WeChat down", wx.PhoneCode("o-bob"), &mpauthxtest.Fault{Status: 500}, 502, mpauthx.StatusPhoneNumberError},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.fault != nil {
					wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, *tt.fault)
				}
				body := strings.NewReader(`{"code":"` + wx.Code("o-bob") + `","phoneCode":"` + tt.phoneCode + `"}`)
				rec := httptest.NewRecorder()
				phoneLoginHandler(c).ServeHTTP(rec, httptest.NewRequest("POST", "/login/phone", body))
				var res mpauthx.Result
				json.Unmarshal(rec.Body.Bytes(), &res)
				if rec.Code != tt.wantHTTP || res.StatusCode != tt.wantCode {
					t.Errorf("POST /login/phone = %d %+v, want %d with status_code %d", rec.Code, res, tt.wantHTTP, tt.wantCode)
				}
			})
		}
	})
}
