package mpauthx_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestCallAPI: CallAPI sends the method, the path's own query, the
// access token and the JSON body to the API under APIBase, decodes the
// reply, and fails with the documented codes, the *WeChatError inside
// for an errcode.
func TestCallAPI(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	type seen struct {
		method, query, contentType, body string
	}
	var last seen
	var calls atomic.Int64
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			b, _ := io.ReadAll(r.Body)
			last = seen{r.Method, r.URL.RawQuery, r.Header.Get("Content-Type"), string(b)}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	e.wx.HandleAPI("/wxa/msg_sec_check", answer(200, `{"errcode":0,"errmsg":"ok","result":{"suggest":"pass","label":100}}`))
	e.wx.HandleAPI("/wxa/getwxacodeunlimit", answer(200, "\x89PNG\r\n\x1a\n..."))
	e.wx.HandleAPI("/wxa/risky", answer(200, `{"errcode":87014,"errmsg":"risky content"}`))
	e.wx.HandleAPI("/wxa/down", answer(500, "Internal Server Error"))
	e.wx.HandleAPI("/wxa/html", answer(200, "<html>busy</html>"))
	e.wx.HandleAPI("/wxa/empty", answer(200, ""))

	type secCheck struct {
		Result struct {
			Suggest string `json:"suggest"`
			Label   int    `json:"label"`
		} `json:"result"`
	}
	t.Run("POST with a body and a query", func(t *testing.T) {
		var r secCheck
		err := e.c.CallAPI(bg, http.MethodPost, "/wxa/msg_sec_check?lang=zh_CN", map[string]any{"content": "hello", "version": 2}, &r)
		if err != nil {
			t.Fatal(err)
		}
		if r.Result.Suggest != "pass" || r.Result.Label != 100 {
			t.Errorf("reply %+v", r)
		}
		tok := e.wx.AccessToken()
		want := seen{"POST", "lang=zh_CN&access_token=" + strings.NewReplacer("+", "%2B", "=", "%3D", "/", "%2F").Replace(tok), "application/json", `{"content":"hello","version":2}`}
		if last != want {
			t.Errorf("WeChat saw %+v, want %+v", last, want)
		}
	})
	t.Run("GET without a body, json.RawMessage and nil reply", func(t *testing.T) {
		if err := e.c.CallAPI(bg, "", "/wxa/msg_sec_check", nil, nil); err != nil {
			t.Fatal(err)
		}
		if last.method != "GET" || last.body != "" || last.contentType != "" || !strings.HasPrefix(last.query, "access_token=") {
			t.Errorf("WeChat saw %+v", last)
		}
		if err := e.c.CallAPI(bg, http.MethodPost, "/wxa/msg_sec_check", json.RawMessage(`{"content":"x"}`), nil); err != nil {
			t.Fatal(err)
		}
		if last.body != `{"content":"x"}` {
			t.Errorf("body %q", last.body)
		}
	})
	t.Run("raw reply", func(t *testing.T) {
		var raw []byte
		if err := e.c.CallAPI(bg, http.MethodPost, "/wxa/getwxacodeunlimit", map[string]string{"scene": "a=1"}, &raw); err != nil {
			t.Fatal(err)
		}
		if string(raw) != "\x89PNG\r\n\x1a\n..." {
			t.Errorf("raw reply %q", raw)
		}
	})

	tests := []struct {
		name      string
		method    string
		path      string
		body      any
		wantCode  mpauthx.StatusCode
		wantInner mpauthx.StatusCode // the wrapped *Error's code, 0 for none
		errcode   int                // the wrapped *WeChatError's, 0 for none
		wantHTTP  int
		sent      bool // a request reached the API
	}{
		{"errcode", "POST", "/wxa/risky", nil, mpauthx.StatusHTTPError, 0, 87014, 502, true},
		{"errcode into a raw reply", "POST", "/wxa/risky", nil, mpauthx.StatusHTTPError, 0, 87014, 502, true},
		{"HTTP 500", "GET", "/wxa/down", nil, mpauthx.StatusHTTPError, mpauthx.StatusHTTPError, 0, 502, true},
		{"not JSON", "GET", "/wxa/html", nil, mpauthx.StatusHTTPError, mpauthx.StatusJSONParseError, 0, 502, true},
		{"empty", "GET", "/wxa/empty", nil, mpauthx.StatusHTTPError, mpauthx.StatusResponseIsNull, 0, 502, true},
		{"unknown API", "GET", "/wxa/nope", nil, mpauthx.StatusHTTPError, mpauthx.StatusHTTPError, 0, 502, false},
		{"empty path", "GET", "", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"relative path", "GET", "wxa/msg_sec_check", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"another host", "GET", "//evil.example/wxa/msg_sec_check", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"absolute URL", "GET", "http://evil.example/wxa/msg_sec_check", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"own access_token", "GET", "/wxa/msg_sec_check?access_token=x", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"fragment", "GET", "/wxa/msg_sec_check#x", nil, mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
		{"body not JSON-encodable", "POST", "/wxa/msg_sec_check", make(chan int), mpauthx.StatusRequiredParamsMissing, 0, 0, 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			var err error
			if strings.Contains(tt.name, "raw") {
				var raw []byte
				err = e.c.CallAPI(bg, tt.method, tt.path, tt.body, &raw)
			} else {
				var r secCheck
				err = e.c.CallAPI(bg, tt.method, tt.path, tt.body, &r)
			}
			wantCode(t, err, tt.wantCode)
			var inner *mpauthx.Error
			if errors.As(errors.Unwrap(err), &inner) != (tt.wantInner != 0) || tt.wantInner != 0 && inner.Code != tt.wantInner {
				t.Errorf("%v: inner *Error %v, want code %d", err, inner, tt.wantInner)
			}
			var we *mpauthx.WeChatError
			if errors.As(err, &we) != (tt.errcode != 0) || tt.errcode != 0 && we.ErrCode != tt.errcode {
				t.Errorf("%v: *WeChatError %v, want errcode %d", err, we, tt.errcode)
			}
			if got := mpauthx.HTTPStatus(err); got != tt.wantHTTP {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.wantHTTP)
			}
			if sent := calls.Load() != before; sent != (tt.sent && tt.path != "/wxa/nope") {
				t.Errorf("request sent: %v", sent)
			}
		})
	}

	t.Run("ctx ends", func(t *testing.T) {
		e.wx.HandleAPI("/wxa/slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := e.c.CallAPI(ctx, "GET", "/wxa/slow", nil, nil)
		wantCode(t, err, mpauthx.StatusHTTPError)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Errorf("%v after %v", err, time.Since(start))
		}
	})
	t.Run("no access token", func(t *testing.T) {
		c := e.client(t, func(*mpauthx.Config) {})
		mpauthx.ForgetAccessToken(c)
		e.rdb.Del(bg, "mpauthx:{app:"+e.wx.AppID+"}:access_token")
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: 40125})
		err := c.CallAPI(bg, "GET", "/wxa/msg_sec_check", nil, nil)
		wantCode(t, err, mpauthx.StatusAccessTokenError)
		if got := mpauthx.HTTPStatus(err); got != 502 {
			t.Errorf("HTTPStatus = %d", got)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c := e.client(t, func(*mpauthx.Config) {})
		c.Close()
		err := c.CallAPI(bg, "GET", "/wxa/msg_sec_check", nil, nil)
		if !errors.Is(err, mpauthx.ErrClosed) || mpauthx.HTTPStatus(err) != 503 {
			t.Errorf("after Close: %v", err)
		}
	})
}

// TestCallAPIRenewsOnce: an API that rejects the access token (40001,
// 42001, 40014) makes CallAPI renew it and send the request once more;
// one that rejects every token gets exactly two requests, never a loop.
func TestCallAPIRenewsOnce(t *testing.T) {
	for _, errcode := range []int{40001, 42001, 40014} {
		t.Run("errcode-"+itoa(errcode), func(t *testing.T) {
			e := newEnv(t, backends()[0], nil)
			clk := newFakeClock()
			c := e.client(t, func(*mpauthx.Config) {})
			mpauthx.SetClock(c, clk.now)
			var calls, rejectFirst atomic.Int64
			rejectFirst.Store(1)
			var tokens []string
			e.wx.HandleAPI("/cgi-bin/message/subscribe/send", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				tokens = append(tokens, r.URL.Query().Get("access_token"))
				if rejectFirst.Load() != 0 {
					if rejectFirst.Load() == 1 {
						rejectFirst.Store(0)
					}
					io.WriteString(w, `{"errcode":`+itoa(errcode)+`,"errmsg":"token rejected"}`)
					return
				}
				io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
			})
			if err := c.CallAPI(bg, "POST", "/cgi-bin/message/subscribe/send", map[string]string{"touser": "o"}, nil); err != nil {
				t.Fatal(err)
			}
			if calls.Load() != 2 || tokens[0] == tokens[1] {
				t.Errorf("%d requests with tokens %q, want 2 with a renewed token", calls.Load(), tokens)
			}
			if st := c.Stats(); st.ForcedRefreshes != 1 {
				t.Errorf("Stats %+v: want one forced refresh", st)
			}

			// Every token rejected: two requests, then the error.
			// Past the 30 s between forced refreshes, for WeChat, Redis
			// and the Client.
			clk.add(time.Minute)
			e.wx.Advance(time.Minute)
			e.mr.FastForward(time.Minute)
			calls.Store(0)
			tokens = nil
			rejectFirst.Store(2)
			err := c.CallAPI(bg, "POST", "/cgi-bin/message/subscribe/send", nil, nil)
			wantCode(t, err, mpauthx.StatusHTTPError)
			var we *mpauthx.WeChatError
			if !errors.As(err, &we) || we.ErrCode != errcode {
				t.Errorf("%v: want errcode %d inside", err, errcode)
			}
			if calls.Load() != 2 {
				t.Errorf("%d requests, want 2", calls.Load())
			}
		})
	}
	t.Run("token ended by WeChat", func(t *testing.T) {
		e := newEnv(t, backends()[0], nil)
		var calls atomic.Int64
		e.wx.HandleAPI("/wxa/ok", func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			io.WriteString(w, `{"errcode":0}`)
		})
		if err := e.c.CallAPI(bg, "GET", "/wxa/ok", nil, nil); err != nil {
			t.Fatal(err)
		}
		e.wx.ExpireAccessToken()
		before := e.c.Stats()
		if err := e.c.CallAPI(bg, "GET", "/wxa/ok", nil, nil); err != nil {
			t.Fatal(err)
		}
		after := e.c.Stats()
		// The rejected request (answered by the fake before the handler),
		// the forced refresh, the request again.
		if calls.Load() != 2 || after.PlatformCalls-before.PlatformCalls != 3 || after.PlatformErrors-before.PlatformErrors != 1 {
			t.Errorf("handler calls %d; Stats before %+v, after %+v", calls.Load(), before, after)
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestCallAPISecrets: neither the access token nor the app secret reach
// CallAPI's error, whether WeChat's errmsg or a proxy's error quotes the
// request.
func TestCallAPISecrets(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	s := &leakScan{t: t}
	s.secret(e.cfg.AppSecret)
	tr := &echoTransport{}
	c := e.client(t, func(cfg *mpauthx.Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	tok := accessToken(t, c)
	s.secret(tok)
	e.wx.HandleAPI("/wxa/echo", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("access_token")
		json.NewEncoder(w).Encode(map[string]any{"errcode": 40097, "errmsg": "bad access_token=" + q + " " + r.URL.RawQuery + " " + e.cfg.AppSecret})
	})
	err := c.CallAPI(bg, "POST", "/wxa/echo?x=1", map[string]string{"a": "b"}, nil)
	s.err("errmsg echoing", nil, err)
	for _, inBody := range []bool{false, true} {
		tr.fail("/wxa/echo", inBody)
		err := c.CallAPI(bg, "POST", "/wxa/echo", map[string]string{"a": "b"}, nil)
		s.err("proxy echoing", nil, err)
	}
	s.check("")
}

// TestCallAPIPathSmuggling: a path whose query a server could read as
// carrying a second access_token (a ';' separator, a pair Go's parser
// skips for a bad escape), whose fragment would swallow the access token
// CallAPI appends (an empty '#'), or whose dot segments climb out of
// APIBase's path is refused with 6001 before any request is sent.
func TestCallAPIPathSmuggling(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	var calls atomic.Int64
	e.wx.HandleAPI("/wxa/msg_sec_check", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"errcode":0}`)
	})
	for _, path := range []string{
		"/wxa/msg_sec_check?lang=zh_CN;access_token=EVIL",
		"/wxa/msg_sec_check?access_token=EVIL%zz",
		"/wxa/msg_sec_check?access%5Ftoken=EVIL%zz",
		"/wxa/msg_sec_check#",
		"/wxa/msg_sec_check?lang=zh_CN#",
		"/../cgi-bin/token",
		"/wxa/../cgi-bin/token",
		"/wxa/%2e%2e/cgi-bin/token",
		"/wxa/./msg_sec_check",
		"/wxa/..\\cgi-bin/token",
	} {
		before := calls.Load()
		err := e.c.CallAPI(bg, http.MethodPost, path, map[string]string{"content": "x"}, nil)
		if mpauthx.Code(err) != mpauthx.StatusRequiredParamsMissing || mpauthx.HTTPStatus(err) != http.StatusBadRequest {
			t.Errorf("CallAPI(%q) = %v; want a 6001 (400)", path, err)
		}
		if calls.Load() != before {
			t.Errorf("CallAPI(%q) sent a request", path)
		}
	}
	// Well-formed paths still pass.
	for _, path := range []string{"/wxa/msg_sec_check", "/wxa/msg_sec_check?lang=zh_CN&x=a%20b", "/wxa/msg_sec_check?"} {
		if err := e.c.CallAPI(bg, http.MethodPost, path, nil, nil); err != nil {
			t.Errorf("CallAPI(%q) = %v", path, err)
		}
	}
}
