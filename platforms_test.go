package mpauthx_test

import (
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// platformClient adds an app of platform to e's fake server and returns a
// Client for it that shares e's DB, Redis and Sku, with the app.
func (e *env) platformClient(t *testing.T, platform mpauthx.Platform) (*mpauthx.Client, mpauthxtest.App) {
	t.Helper()
	a := e.wx.AddApp(mpauthxtest.App{Platform: string(platform), AppID: string(platform) + "-" + rand.Text()[:8], AppSecret: "secret-of-" + string(platform)})
	c := e.client(t, func(cfg *mpauthx.Config) {
		cfg.Platform = platform
		cfg.AppID, cfg.AppSecret = a.AppID, a.AppSecret
		if platform == mpauthx.DouyinMiniProgram {
			cfg.PrivateKey = a.PrivateKey
		}
	})
	return c, a
}

// platformUser registers a user of app a with a fresh openid.
func (e *env) platformUser(a mpauthxtest.App, u mpauthxtest.User) mpauthxtest.User {
	u.AppID = a.AppID
	u.OpenID = "o-" + a.Platform + "-" + rand.Text()[:10]
	return e.wx.AddUser(u)
}

// loginCase is a failing login: a fault of the platform's exchange
// endpoint, or a code, and what the 6008 must wrap.
type loginCase struct {
	name     string
	fault    *mpauthxtest.Fault
	code     string                        // "": a fresh code of the user
	inner    mpauthx.StatusCode            // the wrapped *Error's code; 0: none
	platform func(err error) (bool, int64) // the wrapped platform error and its code
	want     int64                         // that code; 0: none wrapped
}

// weChatCode finds a *WeChatError in err.
func weChatCode(err error) (bool, int64) {
	var we *mpauthx.WeChatError
	if errors.As(err, &we) {
		return true, int64(we.ErrCode)
	}
	return false, 0
}

// douyinCode finds a *DouyinError in err.
func douyinCode(err error) (bool, int64) {
	var de *mpauthx.DouyinError
	if errors.As(err, &de) {
		return true, de.ErrNo
	}
	return false, 0
}

// checkLoginFailures runs the cases against c's AuthorizeCode, the
// faults queued at path, for user openID.
func checkLoginFailures(t *testing.T, e *env, c *mpauthx.Client, path, openID string, cases []loginCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			code := tt.code
			if code == "" {
				code = e.wx.Code(openID)
			}
			if tt.fault != nil {
				e.wx.FailNextAt(path, 1, *tt.fault)
			}
			res, err := c.AuthorizeCode(bg, code)
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			if res.Response != "" || res.StatusCode != mpauthx.StatusSessionKeyRequestError {
				t.Fatalf("Result = %+v", res)
			}
			if ok, got := tt.platform(err); ok != (tt.want != 0) || got != tt.want {
				t.Fatalf("err = %v, want platform code %d inside", err, tt.want)
			}
			if tt.inner != 0 {
				var inner *mpauthx.Error
				if !errors.As(errors.Unwrap(err), &inner) || inner.Code != tt.inner {
					t.Fatalf("inner error of %v is not code %d", err, tt.inner)
				}
			}
		})
	}
}

// TestOAuthLogin: official accounts and websites log in with the code of
// their OAuth callback; a person who logs in through the mini program
// and the official account, sharing a unionid, is one user.
func TestOAuthLogin(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for _, platform := range []mpauthx.Platform{mpauthx.WeChatOfficialAccount, mpauthx.WeChatWebsite} {
			t.Run(string(platform), func(t *testing.T) {
				c, a := e.platformClient(t, platform)
				union := "union-" + rand.Text()[:10]
				mp := e.wx.AddUser(mpauthxtest.User{OpenID: "o-mp-" + rand.Text()[:10], UnionID: union})
				u := e.platformUser(a, mpauthxtest.User{UnionID: union})
				res, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				if err != nil {
					t.Fatalf("AuthorizeCode: %v", err)
				}
				// The token is valid for every Client of the Sku.
				if ok, err := e.c.IsTokenValid(bg, res.Response); !ok || err != nil {
					t.Fatalf("the mini program's Client: IsTokenValid = %v, %v", ok, err)
				}
				mpRes, err := e.c.AuthorizeCode(bg, e.wx.Code(mp.OpenID))
				if err != nil {
					t.Fatal(err)
				}
				if e.c.ExtractOpenID(mpRes.Response) != c.ExtractOpenID(res.Response) {
					t.Errorf("mini program user %q, %s user %q: want one user", e.c.ExtractOpenID(mpRes.Response), platform, c.ExtractOpenID(res.Response))
				}
				used := e.wx.Code(u.OpenID)
				if _, err := c.AuthorizeCode(bg, used); err != nil {
					t.Fatal(err)
				}
				checkLoginFailures(t, e, c, mpauthxtest.OAuthAccessTokenPath, u.OpenID, []loginCase{
					{name: "used code", code: used, platform: weChatCode, want: 40163},
					{name: "unknown code", code: "no-such-code", platform: weChatCode, want: 40029},
					{name: "mini program's code", code: e.wx.Code(mp.OpenID), platform: weChatCode, want: 40029},
					{name: "rate limited", fault: &mpauthxtest.Fault{ErrCode: 45011}, platform: weChatCode, want: 45011},
					{name: "HTTP 500", fault: &mpauthxtest.Fault{Status: 500}, inner: mpauthx.StatusHTTPError, platform: weChatCode},
					{name: "not JSON", fault: &mpauthxtest.Fault{Body: []byte("<html>")}, inner: mpauthx.StatusJSONParseError, platform: weChatCode},
					{name: "no openid", fault: &mpauthxtest.Fault{Body: []byte(`{"access_token":"x","unionid":"u"}`)}, inner: mpauthx.StatusSessionKeyRequestError, platform: weChatCode},
					{name: "bad openid", fault: &mpauthxtest.Fault{Body: []byte(`{"openid":"o|x"}`)}, inner: mpauthx.StatusSessionKeyRequestError, platform: weChatCode},
				})
				t.Run("busy is retried", func(t *testing.T) {
					e.wx.FailNextAt(mpauthxtest.OAuthAccessTokenPath, 2, mpauthxtest.Fault{ErrCode: -1})
					if _, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
						t.Fatalf("two busy answers, then success: %v", err)
					}
				})
				t.Run("wrong secret", func(t *testing.T) {
					bad := e.client(t, func(cfg *mpauthx.Config) {
						cfg.Platform, cfg.AppID, cfg.AppSecret = platform, a.AppID, "wrong"
					})
					_, err := bad.AuthorizeCode(bg, e.wx.Code(u.OpenID))
					if ok, code := weChatCode(err); !ok || code != 40125 {
						t.Fatalf("err = %v, want errcode 40125", err)
					}
				})
			})
		}
	})
}

// TestSnapshotUserRefused: an official account's snapshot-page visitor
// gets 6008 wrapping ErrSnapshotUser, and no user row.
func TestSnapshotUserRefused(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		c, a := e.platformClient(t, mpauthx.WeChatOfficialAccount)
		u := e.platformUser(a, mpauthxtest.User{UnionID: "u-snap-" + rand.Text()[:8], SnapshotUser: true})
		res, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
		if !errors.Is(err, mpauthx.ErrSnapshotUser) || res.Response != "" {
			t.Fatalf("err = %v, res %+v; want ErrSnapshotUser inside", err, res)
		}
		if !strings.Contains(res.StatusMessage, "snapshot") {
			t.Errorf("StatusMessage %q does not say why", res.StatusMessage)
		}
		var rows int
		e.queryRow(`SELECT count(*) FROM user`).Scan(&rows)
		if rows != 0 {
			t.Fatalf("%d user rows after a snapshot visitor, want 0", rows)
		}
		for _, raw := range []string{`1`, `"1"`, `true`} {
			e.wx.FailNextAt(mpauthxtest.OAuthAccessTokenPath, 1, mpauthxtest.Fault{Body: []byte(`{"openid":"o1","unionid":"u1","is_snapshotuser":` + raw + `}`)})
			if _, err := c.AuthorizeCode(bg, "any"); !errors.Is(err, mpauthx.ErrSnapshotUser) {
				t.Errorf("is_snapshotuser %s: err = %v, want ErrSnapshotUser", raw, err)
			}
		}
		e.wx.FailNextAt(mpauthxtest.OAuthAccessTokenPath, 1, mpauthxtest.Fault{Body: []byte(`{"openid":"o-zero","is_snapshotuser":0}`)})
		if _, err := c.AuthorizeCode(bg, "any"); err != nil {
			t.Errorf("is_snapshotuser 0: %v", err)
		}
	})
}

// TestAuthURL: the browser login's URL, and the round trip through the
// fake's page and the callback.
func TestAuthURL(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	oa, oaApp := e.platformClient(t, mpauthx.WeChatOfficialAccount)
	web, webApp := e.platformClient(t, mpauthx.WeChatWebsite)
	const redirect = "https://example.com/login/callback?next=/me"
	for _, tt := range []struct {
		c           *mpauthx.Client
		app         mpauthxtest.App
		path, scope string
	}{
		{oa, oaApp, mpauthxtest.OAuthAuthorizePath, "snsapi_userinfo"},
		{web, webApp, mpauthxtest.OAuthQRConnectPath, "snsapi_login"},
	} {
		t.Run(tt.app.Platform, func(t *testing.T) {
			state := rand.Text()
			got := tt.c.AuthURL(redirect, state)
			want := e.wx.URL + tt.path + "?appid=" + tt.app.AppID + "&redirect_uri=" + url.QueryEscape(redirect) +
				"&response_type=code&scope=" + tt.scope + "&state=" + state + "#wechat_redirect"
			if got != want {
				t.Fatalf("AuthURL =\n%s, want\n%s", got, want)
			}
			u := e.platformUser(tt.app, mpauthxtest.User{UnionID: "u-" + rand.Text()[:8]})
			back, err := e.wx.AuthCallback(got, u.OpenID)
			if err != nil {
				t.Fatal(err)
			}
			cb, _ := url.Parse(back)
			if cb.Host != "example.com" || cb.Query().Get("state") != state || cb.Query().Get("next") != "/me" {
				t.Fatalf("callback %s", back)
			}
			if _, err := tt.c.AuthorizeCode(bg, cb.Query().Get("code")); err != nil {
				t.Fatalf("AuthorizeCode(callback's code): %v", err)
			}
			refused, err := e.wx.AuthCallback(got, "")
			if cb, _ := url.Parse(refused); err != nil || cb.Query().Has("code") || cb.Query().Get("state") != state {
				t.Fatalf("refused: %s, %v", refused, err)
			}

			// The browser's way: the page lists the user, its link
			// redirects with a code.
			page, _, _ := strings.Cut(got, "#")
			resp, err := http.Get(page)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), u.OpenID) {
				t.Fatalf("page: %d %s", resp.StatusCode, body)
			}
			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err = noRedirect.Get(page + "&openid=" + url.QueryEscape(u.OpenID))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != state {
				t.Fatalf("link: %d to %s", resp.StatusCode, loc)
			}
			if _, err := tt.c.AuthorizeCode(bg, loc.Query().Get("code")); err != nil {
				t.Fatalf("AuthorizeCode(page's code): %v", err)
			}
		})
	}
	if got := e.c.AuthURL(redirect, "s"); got != "" {
		t.Errorf("a mini program's AuthURL = %q, want \"\"", got)
	}
	if _, err := e.wx.AuthCallback(strings.Replace(oa.AuthURL(redirect, "s"), "snsapi_userinfo", "snsapi_login", 1), "x"); err == nil {
		t.Error("the fake accepts the website's scope on the official account's page")
	}
}

// TestQQLogin: QQ's code2session and encryptedData, which are WeChat's.
func TestQQLogin(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		c, a := e.platformClient(t, mpauthx.QQMiniProgram)
		u := e.platformUser(a, mpauthxtest.User{NickName: "qq-nick", City: "Shenzhen"})
		res, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatalf("AuthorizeCode: %v", err)
		}
		data, iv := e.wx.UserInfo(u.OpenID)
		res2, err := c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		if err != nil || res2.Response != res.Response {
			t.Fatalf("Authorize = %+v, %v; want the token of AuthorizeCode", res2, err)
		}
		userID := c.ExtractOpenID(res.Response)
		if got, err := c.User(bg, userID); err != nil || got.NickName != "qq-nick" {
			t.Errorf("User = %+v, %v", got, err)
		}
		// Decrypt uses the QQ session key.
		data, iv = e.wx.EncryptFor(u.OpenID, []byte(`{"stepInfoList":[],"watermark":{"appid":"`+a.AppID+`","timestamp":1}}`))
		if _, err := c.Decrypt(bg, userID, data, iv); err != nil {
			t.Errorf("Decrypt: %v", err)
		}
		// The WeChat mini program's watermark is not QQ's.
		data, iv = e.wx.EncryptFor(u.OpenID, []byte(`{"openId":"`+u.OpenID+`","watermark":{"appid":"`+e.wx.AppID+`","timestamp":1}}`))
		_, err = c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		wantCode(t, err, mpauthx.StatusDecryptError)

		used := e.wx.Code(u.OpenID)
		if _, err := c.AuthorizeCode(bg, used); err != nil {
			t.Fatal(err)
		}
		checkLoginFailures(t, e, c, mpauthxtest.Code2SessionPath, u.OpenID, []loginCase{
			{name: "used code", code: used, platform: weChatCode, want: 40163},
			{name: "unknown code", code: "nope", platform: weChatCode, want: 40029},
			{name: "rate limited", fault: &mpauthxtest.Fault{ErrCode: 45011}, platform: weChatCode, want: 45011},
			{name: "HTTP 502", fault: &mpauthxtest.Fault{Status: 502}, inner: mpauthx.StatusHTTPError, platform: weChatCode},
			{name: "errcode 0 without openid", fault: &mpauthxtest.Fault{Body: []byte(`{"errcode":0,"session_key":"k"}`)}, inner: mpauthx.StatusSessionKeyRequestError, platform: weChatCode},
		})
		t.Run("QQ's HTTP error names QQ", func(t *testing.T) {
			e.wx.FailNext(1, mpauthxtest.Fault{Status: 500})
			_, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if !strings.Contains(err.Error(), "QQ answered HTTP 500") {
				t.Errorf("err = %v", err)
			}
		})
	})
}

// TestDouyinLogin: code2session v2, its err_no, and encryptedData.
func TestDouyinLogin(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		c, a := e.platformClient(t, mpauthx.DouyinMiniProgram)
		u := e.platformUser(a, mpauthxtest.User{UnionID: "dy-union-" + rand.Text()[:8], NickName: "dy-nick"})
		res, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatalf("AuthorizeCode: %v", err)
		}
		if ok, err := e.c.IsTokenValid(bg, res.Response); !ok || err != nil {
			t.Fatalf("the WeChat Client: IsTokenValid = %v, %v", ok, err)
		}
		data, iv := e.wx.UserInfo(u.OpenID)
		if res2, err := c.Authorize(bg, e.wx.Code(u.OpenID), data, iv); err != nil || res2.Response != res.Response {
			t.Fatalf("Authorize = %+v, %v", res2, err)
		}
		if got, err := c.User(bg, c.ExtractOpenID(res.Response)); err != nil || got.NickName != "dy-nick" {
			t.Errorf("User = %+v, %v", got, err)
		}
		used := e.wx.Code(u.OpenID)
		if _, err := c.AuthorizeCode(bg, used); err != nil {
			t.Fatal(err)
		}
		checkLoginFailures(t, e, c, mpauthxtest.DouyinCode2SessionPath, u.OpenID, []loginCase{
			{name: "used code", code: used, platform: douyinCode, want: mpauthx.DouyinErrBadCode},
			{name: "unknown code", code: "nope", platform: douyinCode, want: mpauthx.DouyinErrBadCode},
			{name: "WeChat's code", code: e.wx.Code(e.user("wx").OpenID), platform: douyinCode, want: mpauthx.DouyinErrBadCode},
			{name: "err_no fault", fault: &mpauthxtest.Fault{ErrCode: 40014}, platform: douyinCode, want: 40014},
			{name: "HTTP 500", fault: &mpauthxtest.Fault{Status: 500}, inner: mpauthx.StatusHTTPError, platform: douyinCode},
			{name: "empty body", fault: &mpauthxtest.Fault{Body: []byte{}}, inner: mpauthx.StatusResponseIsNull, platform: douyinCode},
			{name: "no data", fault: &mpauthxtest.Fault{Body: []byte(`{"err_no":0,"err_tips":"success"}`)}, inner: mpauthx.StatusSessionKeyRequestError, platform: douyinCode},
			{name: "no session_key", fault: &mpauthxtest.Fault{Body: []byte(`{"err_no":0,"data":{"openid":"o"}}`)}, inner: mpauthx.StatusSessionKeyRequestError, platform: douyinCode},
		})
		t.Run("system error is retried", func(t *testing.T) {
			e.wx.FailNextAt(mpauthxtest.DouyinCode2SessionPath, 2, mpauthxtest.Fault{ErrCode: -1})
			if _, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
				t.Fatalf("two err_no -1, then success: %v", err)
			}
		})
		t.Run("wrong secret", func(t *testing.T) {
			bad := e.client(t, func(cfg *mpauthx.Config) {
				cfg.Platform, cfg.AppID, cfg.AppSecret = mpauthx.DouyinMiniProgram, a.AppID, "wrong"
			})
			_, err := bad.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if ok, code := douyinCode(err); !ok || code != mpauthx.DouyinErrBadSecret {
				t.Fatalf("err = %v, want err_no 40017", err)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("error text %q holds the secret", err)
			}
			if msg := mpauthx.ErrorResult(err).StatusMessage; !strings.Contains(msg, "err_no 40017") {
				t.Errorf("StatusMessage %q does not name the err_no", msg)
			}
		})
	})
}

// TestDouyinPhone: the phone number by code, RSA-decrypted with
// PrivateKey, and the phone login.
func TestDouyinPhone(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		c, a := e.platformClient(t, mpauthx.DouyinMiniProgram)
		// The fake accepts the access tokens it hands out at stable_token
		// as client_tokens.
		tok, err := e.c.AccessToken(bg)
		if err != nil {
			t.Fatal(err)
		}
		mpauthx.SetAccessToken(c, tok)
		u := e.platformUser(a, mpauthxtest.User{Phone: "13800138000"})
		foreign := e.platformUser(a, mpauthxtest.User{Phone: "2025550123", CountryCode: "1"})
		p, err := c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
		if want := (mpauthx.Phone{PhoneNumber: "13800138000", PurePhoneNumber: "13800138000", CountryCode: "86"}); err != nil || p != want {
			t.Fatalf("PhoneNumber = %+v, %v; want %+v", p, err, want)
		}
		p, err = c.PhoneNumber(bg, e.wx.PhoneCode(foreign.OpenID))
		if want := (mpauthx.Phone{PhoneNumber: "+12025550123", PurePhoneNumber: "2025550123", CountryCode: "1"}); err != nil || p != want {
			t.Fatalf("PhoneNumber = %+v, %v; want %+v", p, err, want)
		}
		res, err := c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
		if err != nil {
			t.Fatalf("AuthorizePhone: %v", err)
		}
		if got, err := c.User(bg, c.ExtractOpenID(res.Response)); err != nil || got.Phone != "13800138000" {
			t.Errorf("User = %+v, %v; want the phone recorded", got, err)
		}

		used := e.wx.PhoneCode(u.OpenID)
		if _, err := c.PhoneNumber(bg, used); err != nil {
			t.Fatal(err)
		}
		wxUser := e.wx.AddUser(mpauthxtest.User{OpenID: "o-wx-phone-" + rand.Text()[:8], Phone: "13900139000"})
		plain := func(appID string) []byte {
			return []byte(`{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":86,"watermark":{"appid":"` + appID + `","timestamp":1}}`)
		}
		reply := func(data string) *mpauthxtest.Fault {
			return &mpauthxtest.Fault{Body: []byte(`{"err_no":0,"err_msg":"","data":"` + data + `"}`)}
		}
		other := e.wx.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-other-" + rand.Text()[:6], AppSecret: "x"})
		tests := []struct {
			name  string
			code  string
			fault *mpauthxtest.Fault
			want  mpauthx.Phone
			inner mpauthx.StatusCode
			errNo int64
		}{
			{"number countryCode", "", reply(e.wx.EncryptPhoneData(a.AppID, plain(a.AppID))), mpauthx.Phone{PhoneNumber: "13800138000", PurePhoneNumber: "13800138000", CountryCode: "86"}, 0, 0},
			{"used", used, nil, mpauthx.Phone{}, 0, mpauthxtest.DouyinErrPhoneCode},
			{"unknown", "p+nope", nil, mpauthx.Phone{}, 0, mpauthxtest.DouyinErrPhoneCode},
			{"a WeChat user's code", e.wx.PhoneCode(wxUser.OpenID), nil, mpauthx.Phone{}, 0, mpauthxtest.DouyinErrPhoneCode},
			{"another app's watermark", "", reply(e.wx.EncryptPhoneData(a.AppID, plain(other.AppID))), mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0},
			{"encrypted to another app", "", reply(e.wx.EncryptPhoneData(other.AppID, plain(a.AppID))), mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0},
			{"not encrypted", "", reply("bm90IGVuY3J5cHRlZA=="), mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0},
			{"no data", "", &mpauthxtest.Fault{Body: []byte(`{"err_no":0}`)}, mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0},
			{"bad number", "", reply(e.wx.EncryptPhoneData(a.AppID, []byte(`{"purePhoneNumber":"1380013800x","watermark":{"appid":"`+a.AppID+`"}}`))), mpauthx.Phone{}, mpauthx.StatusPhoneNumberError, 0},
			{"err_no fault", "", &mpauthxtest.Fault{ErrCode: 40014}, mpauthx.Phone{}, 0, 40014},
			{"HTTP 500", "", &mpauthxtest.Fault{Status: 500}, mpauthx.Phone{}, mpauthx.StatusHTTPError, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code := tt.code
				if code == "" {
					code = e.wx.PhoneCode(u.OpenID)
				}
				if tt.fault != nil {
					e.wx.FailNextAt(mpauthxtest.DouyinPhoneNumberPath, 1, *tt.fault)
				}
				p, err := c.PhoneNumber(bg, code)
				if tt.want != (mpauthx.Phone{}) {
					if err != nil || p != tt.want {
						t.Fatalf("PhoneNumber = %+v, %v; want %+v", p, err, tt.want)
					}
					return
				}
				wantCode(t, err, mpauthx.StatusPhoneNumberError)
				if ok, got := douyinCode(err); ok != (tt.errNo != 0) || got != tt.errNo {
					t.Fatalf("err = %v, want err_no %d inside", err, tt.errNo)
				}
				if tt.inner != 0 {
					var inner *mpauthx.Error
					if !errors.As(errors.Unwrap(err), &inner) || inner.Code != tt.inner {
						t.Fatalf("inner error of %v is not code %d", err, tt.inner)
					}
				}
				if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), code) {
					t.Errorf("error text %q holds the token or the code", err)
				}
			})
		}
		t.Run("without PrivateKey", func(t *testing.T) {
			nokey := e.client(t, func(cfg *mpauthx.Config) {
				cfg.Platform, cfg.AppID, cfg.AppSecret = mpauthx.DouyinMiniProgram, a.AppID, a.AppSecret
			})
			_, err := nokey.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
			wantCode(t, err, mpauthx.StatusPhoneNumberError)
			if !strings.Contains(err.Error(), "PrivateKey") {
				t.Errorf("err = %v, want it to name Config.PrivateKey", err)
			}
		})
	})
}

// TestUnsupported: a call that does not exist on a platform fails with
// 6016 before any network call.
func TestUnsupported(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	type calls map[string]func(c *mpauthx.Client) error
	all := calls{
		"Authorize": func(c *mpauthx.Client) error { return second(c.Authorize(bg, "c", "d", "i")) },
		"AuthorizePhone": func(c *mpauthx.Client) error {
			return second(c.AuthorizePhone(bg, "c", "p"))
		},
		"PhoneNumber": func(c *mpauthx.Client) error { _, err := c.PhoneNumber(bg, "p"); return err },
		"AccessToken": func(c *mpauthx.Client) error { _, err := c.AccessToken(bg); return err },
		"RenewAccessToken": func(c *mpauthx.Client) error {
			_, err := c.RenewAccessToken(bg, "t")
			return err
		},
		"Decrypt":         func(c *mpauthx.Client) error { _, err := c.Decrypt(bg, "u", "d", "i"); return err },
		"CheckSessionKey": func(c *mpauthx.Client) error { _, err := c.CheckSessionKey(bg, "u"); return err },
	}
	unsupported := map[mpauthx.Platform][]string{
		mpauthx.WeChatOfficialAccount: {"Authorize", "AuthorizePhone", "PhoneNumber", "Decrypt", "CheckSessionKey"},
		mpauthx.WeChatWebsite:         {"Authorize", "AuthorizePhone", "PhoneNumber", "AccessToken", "RenewAccessToken", "Decrypt", "CheckSessionKey"},
		mpauthx.QQMiniProgram:         {"AuthorizePhone", "PhoneNumber", "AccessToken", "RenewAccessToken", "CheckSessionKey"},
		mpauthx.DouyinMiniProgram:     {"CheckSessionKey"},
	}
	t.Run("wechat-oa/AccessToken exists", func(t *testing.T) {
		oa, _ := e.platformClient(t, mpauthx.WeChatOfficialAccount)
		if tok, err := oa.AccessToken(bg); err != nil || tok == "" {
			t.Fatalf("an official account's AccessToken = %q, %v", tok, err)
		}
	})
	for platform, names := range unsupported {
		c, _ := e.platformClient(t, platform)
		for _, name := range names {
			t.Run(string(platform)+"/"+name, func(t *testing.T) {
				before := e.wx.Requests() + e.wx.AccessTokenRequests()
				err := all[name](c)
				wantCode(t, err, mpauthx.StatusUnsupported)
				if !strings.Contains(err.Error(), string(platform)) {
					t.Errorf("err = %v, want it to name the platform", err)
				}
				if after := e.wx.Requests() + e.wx.AccessTokenRequests(); after != before {
					t.Errorf("%d requests to the fake, want none", after-before)
				}
			})
		}
	}
}

// TestNewPlatformConfig: each platform's Config needs and refusals.
func TestNewPlatformConfig(t *testing.T) {
	e := newWorld(t)
	dy := e.wx.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-cfg", AppSecret: "s"})
	ali := e.wx.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000009"})
	base := e.cfg
	base.Redis = nil
	base.RedisAddr = "127.0.0.1:1"
	bareKey := strings.Join(strings.Split(strings.TrimSpace(dy.PrivateKey), "\n")[1:len(strings.Split(strings.TrimSpace(dy.PrivateKey), "\n"))-1], "")
	tests := []struct {
		name    string
		tweak   func(*mpauthx.Config)
		wantErr string // "" means New succeeds
	}{
		{"wechat without secret", func(c *mpauthx.Config) { c.AppSecret = "" }, "AppSecret is required"},
		{"oa without secret", func(c *mpauthx.Config) { c.Platform, c.AppSecret = mpauthx.WeChatOfficialAccount, "" }, "AppSecret is required"},
		{"wechat with PrivateKey", func(c *mpauthx.Config) { c.PrivateKey = dy.PrivateKey }, "PrivateKey is not used"},
		{"qq with AESKey", func(c *mpauthx.Config) { c.Platform, c.AESKey = mpauthx.QQMiniProgram, ali.AESKey }, "AESKey is not used"},
		{"douyin without PrivateKey", func(c *mpauthx.Config) { c.Platform = mpauthx.DouyinMiniProgram }, ""},
		{"douyin PEM key", func(c *mpauthx.Config) { c.Platform, c.PrivateKey = mpauthx.DouyinMiniProgram, dy.PrivateKey }, ""},
		{"douyin bare base64 key", func(c *mpauthx.Config) { c.Platform, c.PrivateKey = mpauthx.DouyinMiniProgram, bareKey }, ""},
		{"douyin bad key", func(c *mpauthx.Config) { c.Platform, c.PrivateKey = mpauthx.DouyinMiniProgram, "MIIsecretbutbroken" }, "Config.PrivateKey"},
		{"douyin with AlipayPublicKey", func(c *mpauthx.Config) {
			c.Platform, c.AlipayPublicKey = mpauthx.DouyinMiniProgram, ali.AlipayPublicKey
		}, "AlipayPublicKey is not used"},
		{"alipay without secret", func(c *mpauthx.Config) {
			c.Platform, c.AppSecret, c.PrivateKey, c.AlipayPublicKey, c.AESKey = mpauthx.AlipayMiniProgram, "", ali.PrivateKey, ali.AlipayPublicKey, ali.AESKey
		}, ""},
		{"alipay without PrivateKey", func(c *mpauthx.Config) {
			c.Platform, c.AlipayPublicKey = mpauthx.AlipayMiniProgram, ali.AlipayPublicKey
		}, "PrivateKey is required"},
		{"alipay without AlipayPublicKey", func(c *mpauthx.Config) {
			c.Platform, c.PrivateKey = mpauthx.AlipayMiniProgram, ali.PrivateKey
		}, "AlipayPublicKey is required"},
		{"alipay bad AESKey", func(c *mpauthx.Config) {
			c.Platform, c.PrivateKey, c.AlipayPublicKey, c.AESKey = mpauthx.AlipayMiniProgram, ali.PrivateKey, ali.AlipayPublicKey, "c2hvcnQ="
		}, "AESKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.tweak(&cfg)
			c, err := mpauthx.New(cfg)
			if err == nil {
				c.Close()
			}
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("New = %v, want error with %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "MIIsecret") {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}
