package mpauthx_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// Secrets with recognisable parts, so that a partial or re-encoded leak
// is caught too: the app secret needs query escaping, and the session
// key's base64 holds '+' and '/' while its raw bytes end in ASCII.
const (
	leakAppSecret = "Sup3rSecretApp+Key/=&%x"
	leakRawKey    = "\xfb\xef\xbe\xff\xff\xffSESSIONKEY"
	leakKeyMarker = "LEAKYSESSIONKEYMARKER" // a malformed session_key WeChat could send
)

// leakScan collects every text a failure produces and the logs, and checks
// them for secrets.
type leakScan struct {
	t       *testing.T
	secrets []string
	texts   []string // one per case: "name: text"
}

// secret adds s, and its query-escaped and JSON-escaped forms, to the
// strings no text may contain.
func (s *leakScan) secret(v ...string) {
	for _, x := range v {
		j, _ := json.Marshal(x)
		s.secrets = append(s.secrets, x, url.QueryEscape(x), strings.Trim(string(j), `"`))
	}
}

// token adds an issued token and its session part.
func (s *leakScan) token(tok string) {
	s.t.Helper()
	i := strings.LastIndexByte(tok, '|')
	if i < 0 {
		s.t.Fatalf("not a token: %q", tok)
	}
	s.secret(tok, tok[i+1:])
}

// err records the texts of a failed call: every form of err and of the
// errors it wraps, and the Result as returned and as JSON.
func (s *leakScan) err(name string, res *mpauthx.Result, err error) {
	s.t.Helper()
	if err == nil {
		s.t.Errorf("%s: no error", name)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n%+v\n%#v\n%s\n%q\n", err, err, err, err, err)
	// The layers a caller reaches with errors.As on the library's types
	// and on *url.Error. Below them lie the causes the library received
	// (a *net.OpError, a RoundTripper's own error), kept reachable on
	// purpose with their text as it was: the library only redacts what
	// it wraps.
	for u := err; u != nil; u = errors.Unwrap(u) {
		fmt.Fprintf(&b, "%v\n%+v\n", u, u)
		switch u.(type) {
		case *mpauthx.Error, *url.Error:
			continue
		}
		break
	}
	var we *mpauthx.WeChatError
	if errors.As(err, &we) {
		fmt.Fprintf(&b, "%+v %q\n", *we, we.ErrMsg)
	}
	er := mpauthx.ErrorResult(err)
	j, _ := json.Marshal(er)
	fmt.Fprintf(&b, "%+v %s\n", er, j)
	if res != nil {
		if res.Response != "" {
			s.t.Errorf("%s: failed call returned the token %q", name, res.Response)
		}
		j, _ := json.Marshal(*res)
		fmt.Fprintf(&b, "%+v %s\n", *res, j)
	}
	s.texts = append(s.texts, name+": "+b.String())
}

// call returns a function recording a failing (Result, error) call, to
// be called as s.call(name)(c.Method(...)).
func (s *leakScan) call(name string) func(mpauthx.Result, error) {
	return func(res mpauthx.Result, err error) {
		s.t.Helper()
		s.err(name, &res, err)
	}
}

// text records any other text a caller can see, such as an HTTP reply.
func (s *leakScan) text(name, text string) {
	s.texts = append(s.texts, name+": "+text)
}

// check fails the test for each secret found in a text or in logs.
func (s *leakScan) check(logs string) {
	s.t.Helper()
	for _, text := range append(s.texts, "log: "+logs) {
		for _, sec := range s.secrets {
			if sec != "" && strings.Contains(text, sec) {
				i := strings.Index(text, sec)
				s.t.Errorf("leak of %q in %.80s…: %.300q", sec, text, text[max(0, i-150):min(len(text), i+150)])
			}
		}
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// echoReader fails reading with an error that echoes the request URL.
type echoReader struct{ u *url.URL }

func (r echoReader) Read([]byte) (int, error) {
	return 0, fmt.Errorf("connection reset while reading %s (secret %s)", r.u, r.u.Query().Get("secret"))
}

// TestNoSecretLeaksEverywhere extends TestNoSecretLeaks to every failure
// the suite can cause: configuration errors, every kind of WeChat fault
// and transport error (including ones whose text echoes the request URL),
// every decryption failure, Redis down, SQL down, ctx cancelled or
// expired, and a closed Client. The app secret, the session_key (raw,
// base64, hex, escaped) and every issued token and session must be absent
// from every error's text in every format, every Result, the Middleware's
// replies and the JSON logs at Debug level.
func TestNoSecretLeaksEverywhere(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		logger, logs := captureLogs(true) // this backend's alone
		keyB64 := base64.StdEncoding.EncodeToString([]byte(leakRawKey))
		s := &leakScan{t: t}
		s.secret(leakAppSecret, "Sup3rSecret", keyB64, strings.TrimRight(keyB64, "="), leakRawKey, "SESSIONKEY",
			hex.EncodeToString([]byte(leakRawKey)), strings.ToUpper(hex.EncodeToString([]byte(leakRawKey))),
			base64.URLEncoding.EncodeToString([]byte(leakRawKey)), leakKeyMarker)

		wx := mpauthxtest.NewServer("wx-leak-app", leakAppSecret)
		defer wx.Close()
		leaky := func(c *mpauthx.Config) {
			c.AppID, c.AppSecret, c.APIBase, c.Logger = wx.AppID, leakAppSecret, wx.URL, logger
		}
		cfg := e.cfg
		leaky(&cfg)
		newClient := func(tweak func(*mpauthx.Config)) *mpauthx.Client {
			t.Helper()
			return e.client(t, func(c *mpauthx.Config) {
				leaky(c)
				if tweak != nil {
					tweak(c)
				}
			})
		}
		c := newClient(nil)
		u := wx.AddUser(mpauthxtest.User{OpenID: "o-leak", SessionKey: keyB64, NickName: "leak"})
		other := wx.AddUser(mpauthxtest.User{OpenID: "o-leak-other", UnionID: "u-leak-other"})
		login := func(c *mpauthx.Client, u mpauthxtest.User) string {
			t.Helper()
			data, iv := wx.UserInfo(u.OpenID)
			res, err := c.Authorize(bg, wx.Code(u.OpenID), data, iv)
			if err != nil {
				t.Fatal(err)
			}
			s.token(res.Response)
			return res.Response
		}
		token := login(c, u)
		otherToken := login(c, other)
		res, err := c.RefreshToken(bg, u.OpenID)
		if err != nil {
			t.Fatal(err)
		}
		s.token(res.Response)
		stale, token := token, res.Response
		data, iv := wx.UserInfo(u.OpenID)

		t.Run("config", func(t *testing.T) {
			for name, tweak := range map[string]func(*mpauthx.Config){
				"no AppID":         func(c *mpauthx.Config) { c.AppID = "" },
				"no Sku":           func(c *mpauthx.Config) { c.Sku = "" },
				"Sku with bar":     func(c *mpauthx.Config) { c.Sku = "a|b" },
				"negative TTL":     func(c *mpauthx.Config) { c.TokenTTL = -1 },
				"sub-ms TTL":       func(c *mpauthx.Config) { c.TokenTTL = 1 },
				"no DB":            func(c *mpauthx.Config) { c.DB = nil },
				"bad APIBase":      func(c *mpauthx.Config) { c.APIBase = "ftp://x" },
				"APIBase query":    func(c *mpauthx.Config) { c.APIBase = "https://x/?a=b" },
				"unsupported DB":   func(c *mpauthx.Config) { c.DB = sql.OpenDB(fakeConnector{}) },
				"DB without table": func(c *mpauthx.Config) { c.DB = bareSQLite(t) },
				"closed DB at New": func(c *mpauthx.Config) { c.DB = closedSQLite(t) },
			} {
				cfg := cfg
				cfg.RedisPassword = leakAppSecret
				tweak(&cfg)
				c, err := mpauthx.New(cfg)
				if err == nil {
					c.Close()
					t.Fatalf("%s: New succeeded", name)
				}
				s.err("New "+name, nil, err)
			}
			s.text("Config", fmt.Sprintf("%v %+v %s", cfg, cfg, cfg))
		})

		t.Run("WeChat faults", func(t *testing.T) {
			echo := leakAppSecret + " " + url.QueryEscape(leakAppSecret)
			faults := map[string]mpauthxtest.Fault{
				"500 echoing":         {Status: 500, Body: []byte(echo + " " + keyB64)},
				"502 status text":     {Status: 502},
				"404":                 {Status: 404, Body: []byte("no " + echo)},
				"empty":               {Body: []byte{}},
				"blank":               {Body: []byte(" \n ")},
				"not JSON":            {Body: []byte("<html>" + echo + " " + keyB64 + "</html>")},
				"over 1 MiB":          {Body: []byte(`{"openid":"o","session_key":"` + keyB64 + `","x":"` + strings.Repeat(echo, 1<<16) + `"}`)},
				"errcode with key":    {Body: []byte(`{"errcode":40029,"errmsg":"` + echo + `","openid":"o-leak","session_key":"` + keyB64 + `"}`)},
				"no openid":           {Body: []byte(`{"session_key":"` + keyB64 + `"}`)},
				"no session_key":      {Body: []byte(`{"openid":"o-leak"}`)},
				"openid with bar":     {Body: []byte(`{"openid":"o|x","session_key":"` + keyB64 + `"}`)},
				"bad unionid":         {Body: []byte(`{"openid":"o-leak","unionid":"u\u0000","session_key":"` + keyB64 + `"}`)},
				"openid 300 bytes":    {Body: []byte(`{"openid":"` + strings.Repeat("o", 300) + `","session_key":"` + keyB64 + `"}`)},
				"JSON array":          {Body: []byte(`["` + keyB64 + `","` + echo + `"]`)},
				"session_key number":  {Body: []byte(`{"openid":"o-leak","session_key":12345}`)},
				"unknown errcode":     {ErrCode: 99999, ErrMsg: echo},
				"errcode not integer": {Body: []byte(`{"errcode":"40029","errmsg":"` + echo + `"}`)},
			}
			for _, code := range []int{mpauthx.ErrCodeInvalidCode, mpauthx.ErrCodeCodeUsed, mpauthx.ErrCodeRateLimited,
				mpauthx.ErrCodeHighRiskUser, mpauthx.ErrCodeInvalidAppID, mpauthx.ErrCodeInvalidSecret} {
				faults[fmt.Sprint("errcode ", code)] = mpauthxtest.Fault{ErrCode: code, ErrMsg: "rejected " + echo}
			}
			for name, f := range faults {
				wx.FailNext(1, f)
				s.call("AuthorizeCode " + name)(c.AuthorizeCode(bg, wx.Code(u.OpenID)))
				wx.FailNext(1, f)
				s.call("Authorize " + name)(c.Authorize(bg, wx.Code(u.OpenID), data, iv))
			}
			wx.FailNext(4, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeBusy, ErrMsg: "busy " + echo})
			s.call("busy storm")(c.AuthorizeCode(bg, wx.Code(u.OpenID)))
			s.call("unknown code")(c.AuthorizeCode(bg, "no-such-code"))
			used := wx.Code(u.OpenID)
			if _, err := c.AuthorizeCode(bg, used); err != nil {
				t.Fatal(err)
			}
			s.call("used code")(c.AuthorizeCode(bg, used))

			wx.FailNext(1, mpauthxtest.Fault{Delay: 10 * time.Second})
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			s.call("ctx deadline during code2session")(c.AuthorizeCode(ctx, wx.Code(u.OpenID)))
			cancel()
			wx.FailNext(1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeBusy})
			ctx, cancel = context.WithTimeout(bg, 20*time.Millisecond)
			s.call("ctx deadline during busy backoff")(c.AuthorizeCode(ctx, wx.Code(u.OpenID)))
			cancel()

			slow := newClient(func(c *mpauthx.Config) { c.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond} })
			wx.FailNext(1, mpauthxtest.Fault{Delay: 10 * time.Second})
			s.call("HTTP client timeout")(slow.AuthorizeCode(bg, wx.Code(u.OpenID)))

			refused := newClient(func(c *mpauthx.Config) { c.APIBase = "http://" + closedAddr(t) })
			s.call("connection refused")(refused.AuthorizeCode(bg, "a-code"))

			echoing := newClient(func(c *mpauthx.Config) {
				c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					return nil, fmt.Errorf("proxy refused %s (secret %s)", r.URL, r.URL.Query().Get("secret"))
				})}
			})
			s.call("transport error echoing the URL")(echoing.AuthorizeCode(bg, "a-code"))

			failingBody := newClient(func(c *mpauthx.Config) {
				c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(echoReader{r.URL}), Request: r}, nil
				})}
			})
			s.call("body read error echoing the URL")(failingBody.AuthorizeCode(bg, "a-code"))

			dead := "http://" + closedAddr(t)
			redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, dead+r.URL.Path+"?"+r.URL.RawQuery, http.StatusFound)
			}))
			defer redirect.Close()
			redirected := newClient(func(c *mpauthx.Config) { c.APIBase = redirect.URL })
			s.call("redirect to a dead host with the query")(redirected.AuthorizeCode(bg, "a-code"))
		})

		t.Run("decryption", func(t *testing.T) {
			otherData, otherIV := wx.UserInfo(other.OpenID)
			notJSON, notJSONIV := wx.EncryptFor(u.OpenID, []byte("not json "+keyB64))
			otherApp, otherAppIV := wx.EncryptFor(u.OpenID, []byte(`{"openId":"o-leak","watermark":{"appid":"wx-else"}}`))
			mismatch, mismatchIV := wx.EncryptFor(u.OpenID, []byte(`{"openId":"o-leak-other","watermark":{"appid":"wx-leak-app"}}`))
			badUnion, badUnionIV := wx.EncryptFor(u.OpenID, []byte(`{"openId":"o-leak","unionId":"u|x","watermark":{"appid":"wx-leak-app"}}`))
			for name, di := range map[string][2]string{
				"bad iv":          {data, "AAAAAAAAAAAAAAAAAAAAAA=="},
				"short iv":        {data, "AAAA"},
				"iv not base64":   {data, "%%%"},
				"data not base64": {"%" + data, iv},
				"truncated data":  {data[:len(data)-8], iv},
				"another key":     {otherData, otherIV},
				"not JSON":        {notJSON, notJSONIV},
				"another app":     {otherApp, otherAppIV},
				"openid mismatch": {mismatch, mismatchIV},
				"bad unionId":     {badUnion, badUnionIV},
			} {
				s.call("Authorize " + name)(c.Authorize(bg, wx.Code(u.OpenID), di[0], di[1]))
			}
			for name, key := range map[string]string{
				"marker key":    leakKeyMarker,
				"32-byte key":   base64.StdEncoding.EncodeToString([]byte(leakRawKey + leakRawKey)),
				"key with junk": keyB64 + "!",
			} {
				wx.FailNext(1, mpauthxtest.Fault{Body: []byte(`{"openid":"o-leak","session_key":"` + key + `"}`)})
				s.call("Authorize with a " + name + " from WeChat")(c.Authorize(bg, wx.Code(u.OpenID), data, iv))
				_, err := mpauthx.DecryptUserInfo(wx.AppID, key, data, iv)
				s.err("DecryptUserInfo "+name, nil, err)
			}
			_, err := mpauthx.DecryptUserInfo("wx-else", keyB64, data, iv)
			s.err("DecryptUserInfo another appid", nil, err)
			_, err = mpauthx.DecryptUserInfo(wx.AppID, keyB64, notJSON, notJSONIV)
			s.err("DecryptUserInfo not JSON", nil, err)
		})

		t.Run("Redis down", func(t *testing.T) {
			down := redis.NewClient(&redis.Options{Addr: closedAddr(t), Password: leakAppSecret, MaxRetries: -1, DialerRetries: 1})
			defer down.Close()
			dc := newClient(func(c *mpauthx.Config) { c.Redis = down })
			ok, err := dc.IsTokenValid(bg, token)
			if ok {
				t.Fatal("valid with Redis down")
			}
			s.err("IsTokenValid", nil, err)
			s.err("RevokeToken", nil, dc.RevokeToken(bg, token))
			s.call("RefreshToken")(dc.RefreshToken(bg, u.OpenID))
			s.call("AuthorizeCode")(dc.AuthorizeCode(bg, wx.Code(u.OpenID)))
			s.call("Authorize")(dc.Authorize(bg, wx.Code(u.OpenID), data, iv))
			rec := serveMiddlewareOK(dc, "Bearer "+token)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("Middleware with Redis down: HTTP %d", rec.Code)
			}
			s.text("Middleware 503", fmt.Sprint(rec.Header(), rec.Body))
			// New's own connection, with the password.
			own := newClient(func(c *mpauthx.Config) { c.Redis, c.RedisAddr, c.RedisPassword = nil, closedAddr(t), leakAppSecret })
			_, err = own.IsTokenValid(bg, token)
			s.err("IsTokenValid on New's connection", nil, err)
			s.call("RefreshToken on New's connection")(own.RefreshToken(bg, u.OpenID))
		})

		t.Run("SQL down", func(t *testing.T) {
			db := tempSQLite(t)
			sc := newClient(func(c *mpauthx.Config) { c.DB = db })
			db.Close()
			s.call("AuthorizeCode")(sc.AuthorizeCode(bg, wx.Code(u.OpenID)))
			s.call("Authorize")(sc.Authorize(bg, wx.Code(u.OpenID), data, iv))
			s.call("RefreshToken")(sc.RefreshToken(bg, u.OpenID))
		})

		t.Run("ctx", func(t *testing.T) {
			cancelled, cancel := context.WithCancel(bg)
			cancel()
			expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
			defer cancel2()
			for name, ctx := range map[string]context.Context{"cancelled": cancelled, "expired": expired} {
				s.call(name + " AuthorizeCode")(c.AuthorizeCode(ctx, wx.Code(u.OpenID)))
				s.call(name + " Authorize")(c.Authorize(ctx, wx.Code(u.OpenID), data, iv))
				s.call(name + " RefreshToken")(c.RefreshToken(ctx, u.OpenID))
				_, err := c.IsTokenValid(ctx, token)
				s.err(name+" IsTokenValid", nil, err)
				s.err(name+" RevokeToken", nil, c.RevokeToken(ctx, otherToken))
			}
		})

		t.Run("closed", func(t *testing.T) {
			cc := newClient(nil)
			tok := login(cc, wx.AddUser(mpauthxtest.User{OpenID: "o-leak-closed"}))
			cc.Close()
			s.call("AuthorizeCode")(cc.AuthorizeCode(bg, wx.Code(u.OpenID)))
			s.call("Authorize")(cc.Authorize(bg, wx.Code(u.OpenID), data, iv))
			s.call("RefreshToken")(cc.RefreshToken(bg, u.OpenID))
			_, err := cc.IsTokenValid(bg, tok)
			s.err("IsTokenValid", nil, err)
			s.err("RevokeToken", nil, cc.RevokeToken(bg, tok))
		})

		t.Run("caller mistakes", func(t *testing.T) {
			s.call("Authorize without iv")(c.Authorize(bg, wx.Code(u.OpenID), data, ""))
			s.call("RefreshToken unknown user")(c.RefreshToken(bg, "o-nobody"))
			s.call("RefreshToken invalid user ID")(c.RefreshToken(bg, token))
			for name, h := range map[string]string{"stale": "Bearer " + stale, "garbage": "Bearer " + stale + "x", "basic": "Basic " + token} {
				rec := serveMiddlewareOK(c, h)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("Middleware %s: HTTP %d", name, rec.Code)
				}
				s.text("Middleware 401 "+name, fmt.Sprint(rec.Header(), rec.Body))
			}
		})

		out := logs.String()
		// The scan proves something only if the failures were logged.
		for _, code := range []string{"6000", "6008", "6011", "9999"} {
			if !strings.Contains(out, `"status_code":`+code) {
				t.Errorf("no failure with code %s was logged", code)
			}
		}
		for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !json.Valid([]byte(line)) {
				t.Fatalf("log line %d is not JSON: %s", i, line)
			}
		}
		s.check(out)
		t.Logf("%d failure texts and %d log bytes scanned for %d secret forms", len(s.texts), len(out), len(s.secrets))
	})
}

// serveMiddlewareOK sends a request with the Authorization header h through
// c's Middleware, whose next handler answers 200.
func serveMiddlewareOK(c *mpauthx.Client, h string) *httptest.ResponseRecorder {
	return serveAuth(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), h)
}

// bareSQLite returns an SQLite database without the user table.
func bareSQLite(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "bare.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// closedSQLite returns a closed SQLite database that had the user table.
func closedSQLite(t *testing.T) *sql.DB {
	t.Helper()
	db := tempSQLite(t)
	db.Close()
	return db
}

// TestTokenSessionsAreRandom checks the sessions of 10,000 tokens issued by
// RefreshToken: all distinct, 26 characters of base32 (130 bits, over the
// 122 required), and as uniform as crypto/rand makes them: each symbol
// overall and at each position, and each of the 130 bits. The bounds are
// set so that a sound generator fails less than once in a million runs,
// while a generator with a few bits fixed or biased fails them all.
func TestTokenSessionsAreRandom(t *testing.T) {
	const (
		n       = 10000
		length  = 26
		workers = 8
		users   = 8
		symbols = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	)
	e := newEnv(t, backends()[0], nil) // the backend does not matter
	ids := make([]string, users)
	for i := range ids {
		u := e.user(fmt.Sprint("rand", i))
		ids[i] = e.c.ExtractOpenID(e.login(t, u))
	}
	sessions := make([]string, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				res, err := e.c.RefreshToken(bg, ids[i%users])
				if err != nil {
					t.Error(err)
					return
				}
				sessions[i] = res.Response[strings.LastIndexByte(res.Response, '|')+1:]
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	seen := make(map[string]bool, n)
	halves := [2]map[string]bool{make(map[string]bool, n), make(map[string]bool, n)}
	var (
		overall [32]int
		perPos  [length][32]int
		ones    [length * 5]int
	)
	for _, s := range sessions {
		if len(s) != length {
			t.Fatalf("session %q: %d characters, want %d", s, len(s), length)
		}
		if seen[s] {
			t.Fatalf("session %q issued twice", s)
		}
		seen[s] = true
		// Each half carries 65 bits: a repeat among 10,000 has a chance
		// of about 1e-12 unless the halves are not random.
		for h, part := range [2]string{s[:length/2], s[length/2:]} {
			if halves[h][part] {
				t.Fatalf("half %d of session %q repeated", h, s)
			}
			halves[h][part] = true
		}
		for i := range length {
			v := strings.IndexByte(symbols, s[i])
			if v < 0 {
				t.Fatalf("session %q: %q is not base32", s, s[i])
			}
			overall[v]++
			perPos[i][v]++
			for b := range 5 {
				ones[i*5+b] += v >> b & 1
			}
		}
	}
	chi2 := func(counts []int, total int) float64 {
		exp := float64(total) / float64(len(counts))
		x := 0.0
		for _, c := range counts {
			d := float64(c) - exp
			x += d * d / exp
		}
		return x
	}
	// Chi-square bounds with a false alarm probability under 1e-8: 100
	// for 31 degrees of freedom, 1100 for 26×31 = 806.
	if x := chi2(overall[:], n*length); x > 100 {
		t.Errorf("symbol frequencies: chi-square %.1f over 31 degrees of freedom, want under 100: %v", x, overall)
	}
	xPos := 0.0
	for i := range perPos {
		xPos += chi2(perPos[i][:], n)
	}
	if xPos > 1100 {
		t.Errorf("symbol frequencies per position: chi-square %.1f over 806 degrees of freedom, want under 1100", xPos)
	}
	// Each bit is a fair coin: n/2 ones, standard deviation sqrt(n)/2 = 50;
	// 6 deviations bound all 130 bits with a false alarm under 3e-7.
	worst := 0.0
	for i, c := range ones {
		d := math.Abs(float64(c) - n/2)
		worst = max(worst, d)
		if d > 6*math.Sqrt(n)/2 {
			t.Errorf("bit %d of the session is set in %d of %d sessions", i, c, n)
		}
	}
	t.Logf("%d sessions of %d bits: chi-square %.1f (31 df) overall, %.1f (806 df) per position; worst bit %.1f sd off",
		n, length*5, chi2(overall[:], n*length), xPos, worst/(math.Sqrt(n)/2))
}

// TestRedirectsNotFollowed checks that a redirect from the API server is
// not followed, with the default HTTP client and with the caller's: the
// call fails with StatusHTTPError inside StatusSessionKeyRequestError, and
// the host redirected to never sees the request, its query or a Referer
// holding the AppSecret or the code. The caller's client keeps its own
// CheckRedirect.
func TestRedirectsNotFollowed(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string // what the redirect target received
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String()+" Referer: "+r.Header.Get("Referer"))
		mu.Unlock()
		w.Write([]byte(`{"openid":"o-evil","session_key":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	}))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/collect", http.StatusFound)
	}))
	defer redirect.Close()
	callerCheck := func(*http.Request, []*http.Request) error { return nil }
	for name, hc := range map[string]*http.Client{
		"default client":                        nil,
		"caller's client":                       {Timeout: 5 * time.Second, CheckRedirect: callerCheck},
		"caller's client without CheckRedirect": {},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, backends()[0], func(c *mpauthx.Config) { c.APIBase, c.HTTPClient = redirect.URL, hc })
			_, err := e.c.AuthorizeCode(bg, "the-code")
			var inner *mpauthx.Error
			if mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError || !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPError {
				t.Fatalf("AuthorizeCode through a redirect: %v, want 6002 inside 6008", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) > 0 {
				t.Fatalf("the redirect was followed: the target got %q", seen)
			}
			if hc != nil && (hc.CheckRedirect == nil) != (name == "caller's client without CheckRedirect") ||
				hc != nil && hc.CheckRedirect != nil && hc.CheckRedirect(nil, nil) != nil {
				t.Error("New changed the caller's CheckRedirect")
			}
		})
	}
}
