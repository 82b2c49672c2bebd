package mpauthx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// echoTransport forwards requests to the network, except those to the
// path set with fail, which it fails as a hostile proxy would: with an
// error (or, with body set, a reply whose body fails to read) quoting the
// whole request, its URL, its query's values unescaped and its body.
type echoTransport struct {
	mu   sync.Mutex
	path string
	body bool
}

// fail makes the next requests to path fail; "" ends it.
func (tr *echoTransport) fail(path string, body bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.path, tr.body = path, body
}

func (tr *echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	path, inBody := tr.path, tr.body
	tr.mu.Unlock()
	if r.URL.Path != path {
		return http.DefaultTransport.RoundTrip(r)
	}
	var sent []byte
	if r.Body != nil {
		sent, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	echo := fmt.Errorf("proxy: %s %s failed (query %q, body %s)", r.Method, r.URL, r.URL.Query(), sent)
	if inBody {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(errReader{echo}), Request: r}, nil
	}
	return nil, echo
}

// errReader fails every Read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestServerAPISecrets: the app secret, the access token (in the query of
// getuserphonenumber and checksession), the login and phone codes (still
// valid when the request never reached WeChat) and the session key never
// reach an error, a Result or a log line at Debug level, in any form,
// whatever a hostile proxy or an echoing WeChat puts in its errors: a
// transport error or a body read error quoting the request (its URL, its
// query unescaped, its JSON body), an errmsg quoting them raw, escaped or
// straddling the cut of errmsg.
func TestServerAPISecrets(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		logger, logs := captureLogs(true)
		s := &leakScan{t: t}
		keyB64 := base64.StdEncoding.EncodeToString([]byte(leakRawKey))
		s.secret(leakAppSecret, keyB64)
		wx := mpauthxtest.NewServer("wx-leak-api-"+rand.Text()[:8], leakAppSecret)
		defer wx.Close()
		tr := &echoTransport{}
		clk := newFakeClock()
		c := e.client(t, func(cfg *mpauthx.Config) {
			cfg.AppID, cfg.AppSecret, cfg.APIBase, cfg.Logger = wx.AppID, leakAppSecret, wx.URL, logger
			cfg.HTTPClient = &http.Client{Transport: tr}
		})
		mpauthx.SetClock(c, clk.now)
		u := wx.AddUser(mpauthxtest.User{OpenID: "o-leak-api-" + rand.Text()[:8], SessionKey: keyB64, Phone: "13800138000"})
		phoneCode := func() string {
			code := wx.PhoneCode(u.OpenID)
			s.secret(code)
			return code
		}
		loginCode := func() string {
			code := wx.Code(u.OpenID)
			s.secret(code)
			return code
		}
		// next moves the clock past the access token's retry delay, so that
		// every case makes its own requests.
		next := func() { clk.add(time.Minute) }

		// stable_token: the secret travels in the JSON body.
		for _, inBody := range []bool{false, true} {
			tr.fail(mpauthxtest.StableTokenPath, inBody)
			_, err := c.AccessToken(bg)
			s.err(fmt.Sprint("stable_token echoing, in body ", inBody), nil, err)
			next()
		}
		tr.fail("", false)
		wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: 40125,
			ErrMsg: "invalid appsecret " + leakAppSecret + " " + jsonText(leakAppSecret)})
		_, err := c.AccessToken(bg)
		s.err("stable_token errmsg echoing", nil, err)
		next()
		tok := accessToken(t, c)
		s.secret(tok)

		// The server APIs: the token travels in the query.
		pad := strings.Repeat("x", 256-len(tok)/2) // the token straddles errmsg's cut
		for _, path := range []string{mpauthxtest.PhoneNumberPath, mpauthxtest.CheckSessionPath} {
			for _, inBody := range []bool{false, true} {
				tr.fail(path, inBody)
				name := fmt.Sprint(path, " echoing, in body ", inBody)
				if path == mpauthxtest.PhoneNumberPath {
					_, err := c.PhoneNumber(bg, phoneCode())
					s.err("PhoneNumber "+name, nil, err)
					s.call("AuthorizePhone " + name)(c.AuthorizePhone(bg, loginCode(), phoneCode()))
				} else {
					if _, err := c.AuthorizeCode(bg, loginCode()); err != nil {
						t.Fatal(err)
					}
					_, err := c.CheckSessionKey(bg, u.OpenID)
					s.err("CheckSessionKey "+name, nil, err)
				}
				tr.fail("", false)
			}
		}
		for _, msg := range []string{"bad access_token=" + tok, "bad " + strings.ReplaceAll(tok, "+", "%2B"), pad + tok, leakAppSecret} {
			wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{ErrCode: 40097, ErrMsg: msg})
			code := phoneCode()
			wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{ErrCode: 40029, ErrMsg: "invalid code " + code})
			_, err := c.PhoneNumber(bg, code)
			s.err("PhoneNumber errmsg echoing", nil, err)
			_, err = c.PhoneNumber(bg, code)
			s.err("PhoneNumber errmsg echoing the code", nil, err)
			wx.FailNextAt(mpauthxtest.CheckSessionPath, 1, mpauthxtest.Fault{ErrCode: 40097, ErrMsg: msg})
			_, err = c.CheckSessionKey(bg, u.OpenID)
			s.err("CheckSessionKey errmsg echoing", nil, err)
		}

		// code2session: the login code travels in the query.
		for _, inBody := range []bool{false, true} {
			tr.fail(mpauthxtest.Code2SessionPath, inBody)
			s.call(fmt.Sprint("AuthorizeCode echoing, in body ", inBody))(c.AuthorizeCode(bg, loginCode()))
		}
		tr.fail("", false)
		code := loginCode()
		wx.FailNext(1, mpauthxtest.Fault{ErrCode: 40029, ErrMsg: "invalid code " + code})
		s.call("AuthorizeCode errmsg echoing the code")(c.AuthorizeCode(bg, code))

		// A slow WeChat and a ctx that ends.
		wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{Delay: 5 * time.Second})
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		_, err = c.PhoneNumber(ctx, phoneCode())
		cancel()
		s.err("PhoneNumber timed out", nil, err)

		out := logs.String()
		if !strings.Contains(out, `"status_code":6012`) || !strings.Contains(out, `"status_code":6013`) {
			t.Errorf("the failures were not logged: %s", out)
		}
		s.check(out)
	})
}

// jsonText is s as JSON writes it inside a string, with HTML escaping.
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(bytes.Trim(b, `"`))
}

// TestServerAPIHostileReplies: whatever WeChat (or a proxy in its place)
// answers stable_token, getuserphonenumber and checksession with, the
// call fails with the API's status code, wrapping the precise one where
// there is one, and never reports success for a reply that does not say
// so: a checksession reply without errcode is no proof that the session
// key is current.
func TestServerAPIHostileReplies(t *testing.T) {
	huge := []byte(`{"errcode":0,"x":"` + strings.Repeat("x", 1<<20) + `"}`)
	phone := func(info string) []byte {
		return []byte(`{"errcode":0,"errmsg":"ok","phone_info":` + info + `}`)
	}
	info := func(number string) string {
		return `{"phoneNumber":"` + number + `","purePhoneNumber":"` + number + `","countryCode":"86","watermark":{"timestamp":1,"appid":"APPID"}}`
	}
	type reply struct {
		name      string
		body      []byte
		wantInner mpauthx.StatusCode // the wrapped *Error's code, if any
	}
	tests := []struct {
		name    string
		path    string
		code    mpauthx.StatusCode
		replies []reply
	}{
		{"stable_token", mpauthxtest.StableTokenPath, mpauthx.StatusAccessTokenError, []reply{
			{"not JSON", []byte("<html>busy</html>"), mpauthx.StatusJSONParseError},
			{"null", []byte("null"), mpauthx.StatusAccessTokenError},
			{"empty object", []byte("{}"), mpauthx.StatusAccessTokenError},
			{"expires_in 0", []byte(`{"access_token":"AT","expires_in":0}`), mpauthx.StatusAccessTokenError},
			{"expires_in negative", []byte(`{"access_token":"AT","expires_in":-7200}`), mpauthx.StatusAccessTokenError},
			{"expires_in a year", []byte(`{"access_token":"AT","expires_in":31536000}`), mpauthx.StatusAccessTokenError},
			{"expires_in huge", []byte(`{"access_token":"AT","expires_in":1e30}`), mpauthx.StatusJSONParseError},
			{"expires_in string", []byte(`{"access_token":"AT","expires_in":"7200"}`), mpauthx.StatusJSONParseError},
			{"no expires_in", []byte(`{"access_token":"AT"}`), mpauthx.StatusAccessTokenError},
			{"token with a space", []byte(`{"access_token":"A T","expires_in":7200}`), mpauthx.StatusAccessTokenError},
			{"token with NUL", []byte(`{"access_token":"A\u0000T","expires_in":7200}`), mpauthx.StatusAccessTokenError},
			{"token not ASCII", []byte(`{"access_token":"令牌","expires_in":7200}`), mpauthx.StatusAccessTokenError},
			{"token of 10 KB", []byte(`{"access_token":"` + strings.Repeat("A", 10<<10) + `","expires_in":7200}`), mpauthx.StatusAccessTokenError},
			{"token a number", []byte(`{"access_token":12345,"expires_in":7200}`), mpauthx.StatusJSONParseError},
			{"errcode a string", []byte(`{"errcode":"40001"}`), mpauthx.StatusJSONParseError},
			{"over 1 MiB", huge, mpauthx.StatusHTTPResponseError},
		}},
		{"getuserphonenumber", mpauthxtest.PhoneNumberPath, mpauthx.StatusPhoneNumberError, []reply{
			{"not JSON", []byte("<html>busy</html>"), mpauthx.StatusJSONParseError},
			{"null", []byte("null"), mpauthx.StatusPhoneNumberError},
			{"empty object", []byte("{}"), mpauthx.StatusPhoneNumberError},
			{"phone_info null", phone("null"), mpauthx.StatusPhoneNumberError},
			{"phone_info a string", phone(`"13800138000"`), mpauthx.StatusJSONParseError},
			{"no watermark", phone(`{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86"}`), mpauthx.StatusPhoneNumberError},
			{"another app's watermark", phone(strings.Replace(info("13800138000"), "APPID", "wx-other-app", 1)), mpauthx.StatusPhoneNumberError},
			{"number with NUL", phone(info(`138\u00000138000`)), mpauthx.StatusPhoneNumberError},
			{"number of 10 KB", phone(info(strings.Repeat("1", 10<<10))), mpauthx.StatusPhoneNumberError},
			{"number with letters", phone(info("1380013800O")), mpauthx.StatusPhoneNumberError},
			{"number empty", phone(info("")), mpauthx.StatusPhoneNumberError},
			{"number a number", phone(`{"phoneNumber":13800138000}`), mpauthx.StatusJSONParseError},
			{"over 1 MiB", huge, mpauthx.StatusHTTPResponseError},
		}},
		{"checksession", mpauthxtest.CheckSessionPath, mpauthx.StatusSessionKeyRequestError, []reply{
			{"not JSON", []byte("<html>busy</html>"), mpauthx.StatusJSONParseError},
			{"empty", []byte(" "), mpauthx.StatusResponseIsNull},
			{"null", []byte("null"), 0},
			{"empty object", []byte("{}"), 0},
			{"errmsg ok without errcode", []byte(`{"errmsg":"ok"}`), 0},
			{"errcode null", []byte(`{"errcode":null,"errmsg":"ok"}`), 0},
			{"errcode a string", []byte(`{"errcode":"0"}`), mpauthx.StatusJSONParseError},
			{"over 1 MiB", huge, mpauthx.StatusHTTPResponseError},
		}},
	}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		mpauthx.SetClock(e.c, clk.now)
		u := e.phoneUser("13800138000", "")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			for _, r := range tt.replies {
				t.Run(tt.name+"/"+r.name, func(t *testing.T) {
					clk.add(time.Minute) // past the access token's retry delay
					body := bytes.ReplaceAll(r.body, []byte("APPID"), []byte(e.wx.AppID))
					e.wx.FailNextAt(tt.path, 1, mpauthxtest.Fault{Body: body})
					var err error
					switch tt.path {
					case mpauthxtest.StableTokenPath:
						e.rdb.Del(bg, e.appKey("access_token"))
						mpauthx.ForgetAccessToken(e.c)
						var tok string
						if tok, err = e.c.AccessToken(bg); err == nil {
							t.Errorf("AccessToken = %q", tok)
						}
					case mpauthxtest.PhoneNumberPath:
						var p mpauthx.Phone
						if p, err = e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID)); err == nil {
							t.Errorf("PhoneNumber = %+v", p)
						}
					default:
						var ok bool
						if ok, err = e.c.CheckSessionKey(bg, u.OpenID); err == nil {
							t.Errorf("CheckSessionKey = %t, nil", ok)
						}
					}
					if mpauthx.Code(err) != tt.code {
						t.Fatalf("err = %v, want code %d", err, tt.code)
					}
					var inner *mpauthx.Error
					if r.wantInner != 0 && (!errors.As(errors.Unwrap(err), &inner) || inner.Code != r.wantInner) {
						t.Errorf("err = %v, want a %d inside", err, r.wantInner)
					}
				})
			}
		}
		// Healed: each API answers again.
		if _, err := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID)); err != nil {
			t.Errorf("PhoneNumber after the hostile replies: %v", err)
		}
		if ok, err := e.c.CheckSessionKey(bg, u.OpenID); !ok || err != nil {
			t.Errorf("CheckSessionKey after the hostile replies = %t, %v", ok, err)
		}
	})
}

// TestServerAPIFaultsLeakNothing: the server APIs under every fault
// (WeChat slow past the caller's ctx, 500, a refresh in flight when the
// Client closes, Redis failing) leave no goroutine behind once the Client
// is closed, and work again when the fault clears.
func TestServerAPIFaultsLeakNothing(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.phoneUser("13800138000", "")
	if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{Delay: 10 * time.Second})
	if _, err := e.c.PhoneNumber(ctx, e.wx.PhoneCode(u.OpenID)); mpauthx.Code(err) != mpauthx.StatusPhoneNumberError || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PhoneNumber with WeChat slow = %v, want 6013 wrapping DeadlineExceeded", err)
	}
	cancel()
	e.wx.FailNextAt(mpauthxtest.CheckSessionPath, 1, mpauthxtest.Fault{Status: 500})
	if _, err := e.c.CheckSessionKey(bg, u.OpenID); mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError {
		t.Errorf("CheckSessionKey with WeChat failing = %v, want 6008", err)
	}
	e.mr.SetError("LOADING Redis is loading the dataset in memory")
	if _, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
		t.Errorf("AuthorizePhone with Redis failing = %v, want 6000", err)
	}
	e.mr.SetError("")
	if res, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)); err != nil || !e.valid(t, res.Response) {
		t.Errorf("AuthorizePhone after the faults = %+v, %v", res, err)
	}
	// A refresh in flight, stuck on WeChat, when the Client closes.
	e.rdb.Del(bg, e.appKey("access_token"))
	mpauthx.ForgetAccessToken(e.c)
	e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Delay: time.Minute})
	ctx, cancel = context.WithTimeout(bg, 20*time.Millisecond)
	if _, err := e.c.AccessToken(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AccessToken with WeChat stuck = %v, want DeadlineExceeded", err)
	}
	cancel()
	if len(libraryGoroutines()) == 0 {
		t.Fatal("no goroutine of the library seen while a refresh is in flight")
	}
	e.c.Close()
	e.c.Close()
	waitFor(t, "the library's goroutines to end", func() bool {
		if g := libraryGoroutines(); len(g) > 0 {
			t.Logf("still running:\n%s", strings.Join(g, "\n\n"))
			return false
		}
		return true
	})
}

// libraryFrame matches a stack frame of the library itself (not of its
// tests, nor of mpauthxtest).
var libraryFrame = regexp.MustCompile(`(?m)^github\.com/seeda8e74ca0/mpauthx\.`)

// libraryGoroutines returns the stacks of the goroutines running the
// library's code. (goleak would also list the fake servers' own, which
// live until the test's Cleanup.)
func libraryGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if libraryFrame.MatchString(g) {
			out = append(out, g)
		}
	}
	return out
}

// TestHostileUserIDsOnEveryBackend: user IDs with braces (Cluster hash
// tags), '%', '_' and quotes get their token and session key in one slot
// and are found literally, by every call that takes a user ID.
func TestHostileUserIDsOnEveryBackend(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for _, id := range []string{"o{x}", "{o}", "o}{", "o{", "{}o", "o%_'\"\\", "o" + strings.Repeat("}", 40)} {
			t.Run(id, func(t *testing.T) {
				u := e.wx.AddUser(mpauthxtest.User{OpenID: id + "-" + rand.Text()[:6], Phone: "13800138000"})
				res, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
				if err != nil || e.c.ExtractOpenID(res.Response) != u.OpenID {
					t.Fatalf("AuthorizePhone = %+v, %v", res, err)
				}
				data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
				if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); err != nil {
					t.Errorf("Decrypt: %v", err)
				}
				if ok, err := e.c.CheckSessionKey(bg, u.OpenID); !ok || err != nil {
					t.Errorf("CheckSessionKey = %t, %v", ok, err)
				}
				if got, err := e.c.User(bg, u.OpenID); err != nil || got.Phone != u.Phone {
					t.Errorf("User = %+v, %v", got, err)
				}
				if _, err := e.c.User(bg, strings.ReplaceAll(u.OpenID, "-", "_")); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
					t.Errorf("User with '_' for '-' = %v, want 6010 (no LIKE)", err)
				}
				if res, err = e.c.RefreshToken(bg, u.OpenID); err != nil {
					t.Fatal(err)
				}
				if err := e.c.RevokeToken(bg, res.Response); err != nil || e.valid(t, res.Response) {
					t.Errorf("RevokeToken = %v", err)
				}
				if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
					t.Errorf("Decrypt after RevokeToken = %v, want 6014", err)
				}
			})
		}
	})
}
