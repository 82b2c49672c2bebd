package mpauthx_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// alipayFake is a fake server with one Alipay app, and the Config tweak
// that makes a Client of that app.
type alipayFake struct {
	srv *mpauthxtest.Server
	app mpauthxtest.App
}

func newAlipayFake(t testing.TB) *alipayFake {
	t.Helper()
	srv := mpauthxtest.NewServer("wx-unused-"+rand.Text()[:6], "unused-secret")
	t.Cleanup(srv.Close)
	app := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021" + rand.Text()[:12]})
	return &alipayFake{srv: srv, app: app}
}

// tweak sets cfg up for the fake's Alipay app: no AppSecret, its keys,
// the fake's URL.
func (f *alipayFake) tweak(cfg *mpauthx.Config) {
	cfg.Platform = mpauthx.AlipayMiniProgram
	cfg.AppID, cfg.AppSecret = f.app.AppID, ""
	cfg.PrivateKey, cfg.AlipayPublicKey, cfg.AESKey = f.app.PrivateKey, f.app.AlipayPublicKey, f.app.AESKey
	cfg.APIBase = f.srv.URL
}

// user registers a user of the Alipay app: an open_id user, or a user_id
// one (an older app's) when userID.
func (f *alipayFake) user(name string, userID bool) mpauthxtest.User {
	id := "083l" + name + rand.Text()[:10]
	if userID {
		id = "2088" + digits(12)
	}
	return f.srv.AddUser(mpauthxtest.User{AppID: f.app.AppID, OpenID: id, Phone: "138" + digits(8)})
}

// digits returns n random decimal digits.
func digits(n int) string {
	b := []byte(rand.Text()[:n])
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

// alipayClient returns a Client of the fake's Alipay app on miniredis,
// with tweak applied after the fake's.
func (f *alipayFake) client(t *testing.T, tweak func(*mpauthx.Config)) *env {
	t.Helper()
	return newEnv(t, backends()[0], func(cfg *mpauthx.Config) {
		f.tweak(cfg)
		if tweak != nil {
			tweak(cfg)
		}
	})
}

// wantAlipayError fails unless err is code wrapping an *AlipayError with
// subCode.
func wantAlipayError(t *testing.T, err error, code mpauthx.StatusCode, alipayCode, subCode string) {
	t.Helper()
	wantCode(t, err, code)
	var ae *mpauthx.AlipayError
	if !errors.As(err, &ae) || ae.Code != alipayCode || ae.SubCode != subCode {
		t.Fatalf("err = %v, want an *AlipayError %s %s", err, alipayCode, subCode)
	}
}

func TestAlipayLogin(t *testing.T) {
	f := newAlipayFake(t)
	forEachRedis(t, f.tweak, func(t *testing.T, e *env) {
		for _, userID := range []bool{false, true} {
			u := f.user("ann", userID)
			res, err := e.c.AuthorizeCode(bg, f.srv.Code(u.OpenID))
			if err != nil || res.StatusCode != mpauthx.StatusSuccess {
				t.Fatalf("AuthorizeCode (user_id %v) = %+v, %v", userID, res, err)
			}
			if !e.valid(t, res.Response) {
				t.Fatal("the token is not valid")
			}
			id := e.c.ExtractOpenID(res.Response)
			got, err := e.c.User(bg, id)
			if err != nil || got.OpenID != u.OpenID || got.UnionID != "" {
				t.Fatalf("User = %+v, %v; want the Alipay ID %s as OpenID and no unionid", got, err, u.OpenID)
			}
			// The same person again: the same user and token.
			res2, err := e.c.AuthorizeCode(bg, f.srv.Code(u.OpenID))
			if err != nil || res2.Response != res.Response {
				t.Fatalf("second login = %+v, %v; want the same token", res2, err)
			}
		}
	})
}

func TestAlipayLoginFailures(t *testing.T) {
	f := newAlipayFake(t)
	other := f.srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021" + rand.Text()[:12]})
	logger, logs := captureLogs(false)
	e := f.client(t, func(cfg *mpauthx.Config) { cfg.Logger = logger })
	u := f.user("bob", false)
	used := f.srv.Code(u.OpenID)
	if _, err := e.c.AuthorizeCode(bg, used); err != nil {
		t.Fatal(err)
	}
	// A success as the fake sends it, for faults to alter.
	signedValue := []byte(`{"access_token":"authusrB\/x","open_id":"` + u.OpenID + `"}`)
	sign := f.srv.AlipaySign(f.app.AppID, signedValue)
	reply := func(value string, sign string) []byte {
		b := `{"alipay_system_oauth_token_response":` + value
		if sign != "" {
			b += `,"sign":"` + sign + `"`
		}
		return []byte(b + "}")
	}
	type check func(t *testing.T, err error)
	sigRefused := func(t *testing.T, err error) {
		t.Helper()
		wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
		if !errors.Is(err, mpauthx.ErrAlipaySignature) {
			t.Fatalf("err = %v, want ErrAlipaySignature", err)
		}
	}
	inner := func(code mpauthx.StatusCode) check {
		return func(t *testing.T, err error) {
			t.Helper()
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			var e *mpauthx.Error
			if !errors.As(errors.Unwrap(err), &e) || e.Code != code {
				t.Fatalf("err = %v, want 6008 around %d", err, code)
			}
		}
	}
	alipayErr := func(code, sub string) check {
		return func(t *testing.T, err error) {
			t.Helper()
			wantAlipayError(t, err, mpauthx.StatusSessionKeyRequestError, code, sub)
		}
	}
	tests := []struct {
		name  string
		code  string             // "" means a fresh code of u
		fault *mpauthxtest.Fault // the gateway's next answer
		tweak func(*mpauthx.Config)
		ctx   func() (context.Context, context.CancelFunc)
		check check
		log   string
	}{
		{name: "used code", code: used, check: alipayErr("40002", "isv.code-invalid"), log: "level=INFO"},
		{name: "unknown code", code: "no-such-code", check: alipayErr("40002", "isv.code-invalid"), log: "level=INFO"},
		{name: "another app's key signs", tweak: func(c *mpauthx.Config) { c.PrivateKey = other.PrivateKey }, check: alipayErr("40002", "isv.invalid-signature"), log: "level=WARN"},
		{name: "another Alipay key verifies", tweak: func(c *mpauthx.Config) { c.AlipayPublicKey = other.AlipayPublicKey }, check: sigRefused, log: "level=WARN"},
		{name: "clock 8 hours off", tweak: func(c *mpauthx.Config) {}, check: alipayErr("40002", "isv.invalid-timestamp"), log: "level=WARN"},
		{name: "unsigned success", fault: &mpauthxtest.Fault{Body: reply(string(signedValue), "")}, check: sigRefused},
		{name: "mis-signed success", fault: &mpauthxtest.Fault{Body: reply(strings.Replace(string(signedValue), u.OpenID, "083lmallory", 1), sign)}, check: sigRefused},
		{name: "re-serialised success", fault: &mpauthxtest.Fault{Body: reply(strings.ReplaceAll(string(signedValue), `\/`, `/`), sign)}, check: sigRefused},
		{name: "signed as sent", fault: &mpauthxtest.Fault{Body: reply(string(signedValue), sign)}},
		{name: "signed business error", fault: &mpauthxtest.Fault{Body: f.srv.AlipayReply(f.app.AppID, "error_response", []byte(`{"code":"40004","msg":"Business Failed","sub_code":"isv.unmatched-app-id"}`))}, check: alipayErr("40004", "isv.unmatched-app-id")},
		{name: "mis-signed error", fault: &mpauthxtest.Fault{Body: []byte(`{"error_response":{"code":"40004"},"sign":"` + sign + `"}`)}, check: sigRefused},
		{name: "gateway busy", fault: &mpauthxtest.Fault{ErrCode: 20000, ErrMsg: "isp.unknow-error"}, check: alipayErr("20000", "isp.unknow-error"), log: "level=WARN"},
		{name: "HTTP 502", fault: &mpauthxtest.Fault{Status: http.StatusBadGateway}, check: inner(mpauthx.StatusHTTPError)},
		{name: "empty body", fault: &mpauthxtest.Fault{Body: []byte{}}, check: inner(mpauthx.StatusResponseIsNull)},
		{name: "HTML", fault: &mpauthxtest.Fault{Body: []byte("<html>busy</html>")}, check: inner(mpauthx.StatusJSONParseError)},
		{name: "no member", fault: &mpauthxtest.Fault{Body: []byte(`{"sign":"x"}`)}, check: inner(mpauthx.StatusSessionKeyRequestError)},
		{name: "timeout", fault: &mpauthxtest.Fault{Delay: time.Second},
			ctx: func() (context.Context, context.CancelFunc) { return context.WithTimeout(bg, 50*time.Millisecond) },
			check: func(t *testing.T, err error) {
				wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want DeadlineExceeded", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.c
			if tt.tweak != nil {
				c = f.client(t, func(cfg *mpauthx.Config) { cfg.Logger = logger; tt.tweak(cfg) }).c
				if tt.name == "clock 8 hours off" {
					// A clock that reads UTC as Beijing time.
					mpauthx.SetClock(c, func() time.Time { return time.Now().Add(-8 * time.Hour) })
				}
			}
			code := tt.code
			if code == "" {
				code = f.srv.Code(u.OpenID)
			}
			if tt.fault != nil {
				f.srv.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, *tt.fault)
			}
			ctx, cancel := context.WithCancel(bg)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			logs.Reset()
			res, err := c.AuthorizeCode(ctx, code)
			if tt.check == nil {
				if err != nil {
					t.Fatalf("AuthorizeCode = %v", err)
				}
				return
			}
			if err == nil || res.Response != "" || res.StatusCode != mpauthx.StatusSessionKeyRequestError {
				t.Fatalf("AuthorizeCode = %+v, %v; want a 6008 failure", res, err)
			}
			tt.check(t, err)
			for _, secret := range []string{code, f.app.PrivateKey[40:80], "authusrB"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Fatalf("error %q or logs hold a secret (%q)", err, secret)
				}
			}
			if tt.log != "" && !strings.Contains(logs.String(), tt.log) {
				t.Fatalf("logs %q, want %s", logs, tt.log)
			}
			// A faulted request does not use the code: it logs in now.
			if tt.fault != nil && tt.fault.Body == nil {
				if _, err := e.c.AuthorizeCode(bg, code); err != nil {
					t.Fatalf("the code was used by the fault: %v", err)
				}
			}
		})
	}
}

func TestAlipayPhone(t *testing.T) {
	f := newAlipayFake(t)
	other := f.srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021" + rand.Text()[:12]})
	otherUser := f.srv.AddUser(mpauthxtest.User{AppID: other.AppID, OpenID: "083lother" + rand.Text()[:8], Phone: "13900000000"})
	forEachRedis(t, f.tweak, func(t *testing.T, e *env) {
		u := f.user("cy", false)
		resp := f.srv.AlipayPhoneResponse(u.OpenID)
		p, err := e.c.PhoneNumber(bg, resp)
		if err != nil || p.PhoneNumber != u.Phone || p.PurePhoneNumber != u.Phone || p.CountryCode != "" {
			t.Fatalf("PhoneNumber = %+v, %v; want %s and no country code", p, err, u.Phone)
		}
		res, err := e.c.AuthorizePhone(bg, f.srv.Code(u.OpenID), resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.c.User(bg, e.c.ExtractOpenID(res.Response))
		if err != nil || got.Phone != u.Phone || got.OpenID != u.OpenID {
			t.Fatalf("User = %+v, %v", got, err)
		}
	})

	e := f.client(t, nil)
	u := f.user("dee", false)
	resp := f.srv.AlipayPhoneResponse(u.OpenID)
	tampered := strings.Replace(resp, `"response":"`, `"response":"AAAA`, 1)
	noPhone := f.srv.AlipayEncryptPhone(f.app.AppID, []byte(`{"code":"10000","msg":"Success","mobile":""}`))
	refused := f.srv.AlipayEncryptPhone(f.app.AppID, []byte(`{"code":"40003","msg":"Insufficient Conditions","subCode":"isv.invalid-auth-relations","subMsg":"无效的授权关系"}`))
	for _, tt := range []struct {
		name     string
		response string
		check    func(t *testing.T, err error)
	}{
		{"tampered", tampered, func(t *testing.T, err error) {
			wantCode(t, err, mpauthx.StatusPhoneNumberError)
			if !errors.Is(err, mpauthx.ErrAlipaySignature) {
				t.Fatalf("err = %v, want ErrAlipaySignature", err)
			}
		}},
		{"another app's", f.srv.AlipayPhoneResponse(otherUser.OpenID), func(t *testing.T, err error) {
			wantCode(t, err, mpauthx.StatusPhoneNumberError)
			if !errors.Is(err, mpauthx.ErrAlipaySignature) {
				t.Fatalf("err = %v, want ErrAlipaySignature", err)
			}
		}},
		{"not authorised", refused, func(t *testing.T, err error) {
			wantAlipayError(t, err, mpauthx.StatusPhoneNumberError, "40003", "isv.invalid-auth-relations")
		}},
		{"no phone", noPhone, func(t *testing.T, err error) { wantCode(t, err, mpauthx.StatusPhoneNumberError) }},
		{"a WeChat phone code", "phone-code-123", func(t *testing.T, err error) { wantCode(t, err, mpauthx.StatusPhoneNumberError) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.PhoneNumber(bg, tt.response)
			tt.check(t, err)
			res, err := e.c.AuthorizePhone(bg, f.srv.Code(u.OpenID), tt.response)
			if res.StatusCode != mpauthx.StatusPhoneNumberError {
				t.Fatalf("AuthorizePhone = %+v", res)
			}
			tt.check(t, err)
			if strings.Contains(err.Error(), u.Phone) {
				t.Fatalf("error %q holds the phone number", err)
			}
		})
	}
	// A bad login code fails first, as 6008.
	res, err := e.c.AuthorizePhone(bg, "no-such-code", resp)
	if res.StatusCode != mpauthx.StatusSessionKeyRequestError {
		t.Fatalf("AuthorizePhone with a bad login code = %+v, %v", res, err)
	}
	// Without AESKey, the phone calls fail; the login does not.
	noAES := f.client(t, func(cfg *mpauthx.Config) { cfg.AESKey = "" })
	if _, err := noAES.c.PhoneNumber(bg, resp); mpauthx.Code(err) != mpauthx.StatusPhoneNumberError || !strings.Contains(err.Error(), "AESKey") {
		t.Fatalf("PhoneNumber without AESKey = %v", err)
	}
	if _, err := noAES.c.AuthorizeCode(bg, f.srv.Code(u.OpenID)); err != nil {
		t.Fatalf("AuthorizeCode without AESKey = %v", err)
	}
	// Another app's AES key: the signature holds, the content does not
	// decrypt.
	wrongAES := f.client(t, func(cfg *mpauthx.Config) { cfg.AESKey = other.AESKey })
	if _, err := wrongAES.c.PhoneNumber(bg, resp); mpauthx.Code(err) != mpauthx.StatusPhoneNumberError || errors.Is(err, mpauthx.ErrAlipaySignature) {
		t.Fatalf("PhoneNumber with another AESKey = %v", err)
	}
}

// TestAlipayUnsupported: the calls an Alipay app lacks fail with 6016
// before any request (the code stays usable).
func TestAlipayUnsupported(t *testing.T) {
	f := newAlipayFake(t)
	e := f.client(t, nil)
	u := f.user("eve", false)
	code := f.srv.Code(u.OpenID)
	_, err := e.c.Authorize(bg, code, "ZGF0YQ==", "aXY=")
	wantCode(t, err, mpauthx.StatusUnsupported)
	_, err = e.c.AccessToken(bg)
	wantCode(t, err, mpauthx.StatusUnsupported)
	_, err = e.c.RenewAccessToken(bg, "x")
	wantCode(t, err, mpauthx.StatusUnsupported)
	_, err = e.c.Decrypt(bg, u.OpenID, "ZGF0YQ==", "aXY=")
	wantCode(t, err, mpauthx.StatusUnsupported)
	_, err = e.c.CheckSessionKey(bg, u.OpenID)
	wantCode(t, err, mpauthx.StatusUnsupported)
	if _, err := e.c.AuthorizeCode(bg, code); err != nil {
		t.Fatalf("the code was used: %v", err)
	}
}

// TestAlipayConfig: New's checks of an Alipay app's keys, whose errors
// never quote a key; keys as the console hands them out (bare base64)
// work.
func TestAlipayConfig(t *testing.T) {
	f := newAlipayFake(t)
	other := f.srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021" + rand.Text()[:12]})
	bare := func(p string) string {
		b, _ := pem.Decode([]byte(p))
		return base64.StdEncoding.EncodeToString(b.Bytes)
	}
	pkcs1, err := os.ReadFile("testdata/alipay/app-private-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	smallPub := base64.StdEncoding.EncodeToString(smallDER)
	world := newWorld(t)
	for _, tt := range []struct {
		name  string
		tweak func(*mpauthx.Config)
		want  string // "" means New succeeds
	}{
		{"as the fake hands them out", nil, ""},
		{"bare base64", func(c *mpauthx.Config) { c.PrivateKey, c.AlipayPublicKey = bare(c.PrivateKey), bare(c.AlipayPublicKey) }, ""},
		{"PKCS#1", func(c *mpauthx.Config) { c.PrivateKey = string(pkcs1) }, ""},
		{"no AESKey", func(c *mpauthx.Config) { c.AESKey = "" }, ""},
		{"no PrivateKey", func(c *mpauthx.Config) { c.PrivateKey = "" }, "PrivateKey is required"},
		{"no AlipayPublicKey", func(c *mpauthx.Config) { c.AlipayPublicKey = "" }, "AlipayPublicKey is required"},
		{"PrivateKey garbled", func(c *mpauthx.Config) { c.PrivateKey = c.PrivateKey[:200] + "!" + c.PrivateKey[201:] }, "Config.PrivateKey"},
		{"public key as PrivateKey", func(c *mpauthx.Config) { c.PrivateKey = other.AlipayPublicKey }, "Config.PrivateKey"},
		{"private key as AlipayPublicKey", func(c *mpauthx.Config) { c.AlipayPublicKey = other.PrivateKey }, "Config.AlipayPublicKey"},
		{"the app's own public key", func(c *mpauthx.Config) { c.AlipayPublicKey = f.app.PublicKey }, "app's own public key"},
		{"1024-bit Alipay key", func(c *mpauthx.Config) { c.AlipayPublicKey = smallPub }, "2048 bits"},
		{"AESKey not base64", func(c *mpauthx.Config) { c.AESKey = "not base64!" }, "AESKey"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := world.cfg
			cfg.Redis = nil
			cfg.RedisAddr = closedAddr(t)
			f.tweak(&cfg)
			if tt.tweak != nil {
				tt.tweak(&cfg)
			}
			c, err := mpauthx.New(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("New succeeded, want an error with %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
			for _, k := range []string{cfg.PrivateKey, cfg.AlipayPublicKey} {
				if len(k) > 100 && strings.Contains(err.Error(), k[60:90]) {
					t.Fatalf("New's error %q quotes a key", err)
				}
			}
		})
	}
}
