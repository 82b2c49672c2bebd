package mpauthx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
