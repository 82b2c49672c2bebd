package mpauthx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseSessionReply(t *testing.T) {
	long := strings.Repeat("x", 300)
	han := strings.Repeat("中", 100) // 300 bytes; byte 256 falls inside a rune
	tests := []struct {
		name    string
		body    string
		want    session // on success
		code    StatusCode
		errCode int    // non-zero: a *WeChatError with this ErrCode
		errMsg  string // with errCode: the expected ErrMsg
		anyErr  bool   // some error, code not pinned
	}{
		{name: "success", body: `{"openid":"oABC","session_key":"SK/+==","unionid":"uXYZ"}`,
			want: session{openID: "oABC", sessionKey: "SK/+==", unionID: "uXYZ"}},
		{name: "success without unionid", body: `{"session_key":"SK","openid":"oABC"}`,
			want: session{openID: "oABC", sessionKey: "SK"}},
		{name: "whitespace around JSON", body: " \r\n\t{\"openid\":\"o1\",\"session_key\":\"k1\"}\n\n ",
			want: session{openID: "o1", sessionKey: "k1"}},
		{name: "errcode 0 with data", body: `{"errcode":0,"errmsg":"ok","openid":"o2","session_key":"k2","unionid":"u2"}`,
			want: session{openID: "o2", sessionKey: "k2", unionID: "u2"}},
		{name: "unknown fields ignored", body: `{"openid":"o3","session_key":"k3","extra":{"a":[1,2,3]}}`,
			want: session{openID: "o3", sessionKey: "k3"}},

		{name: "empty body", body: "", code: StatusResponseIsNull},
		{name: "only whitespace", body: " \n\t\r ", code: StatusResponseIsNull},
		{name: "not JSON", body: "<html>502 Bad Gateway</html>", code: StatusJSONParseError},
		{name: "JSON array", body: `[{"openid":"o","session_key":"k"}]`, code: StatusJSONParseError},
		{name: "JSON string", body: `"openid"`, code: StatusJSONParseError},
		{name: "truncated JSON", body: `{"openid":"o","session_key":"k"`, code: StatusJSONParseError},
		{name: "trailing garbage", body: `{"openid":"o","session_key":"k"} x`, code: StatusJSONParseError},
		{name: "errcode not a number", body: `{"errcode":"40029","errmsg":"invalid code"}`, anyErr: true},
		{name: "deeply nested JSON", body: strings.Repeat("[", 100000), code: StatusJSONParseError},
		{name: "deeply nested object", body: strings.Repeat(`{"a":`, 100000), code: StatusJSONParseError},

		{name: "errcode -1", body: `{"errcode":-1,"errmsg":"system error"}`, errCode: -1, errMsg: "system error"},
		{name: "errcode 40029", body: `{"errcode":40029,"errmsg":"invalid code, rid: 1"}`, errCode: 40029, errMsg: "invalid code, rid: 1"},
		{name: "errcode 40163", body: `{"errcode":40163,"errmsg":"code been used"}`, errCode: 40163, errMsg: "code been used"},
		{name: "errcode 45011", body: `{"errcode":45011,"errmsg":"api minute-quota reach limit"}`, errCode: 45011, errMsg: "api minute-quota reach limit"},
		{name: "errcode 40226", body: `{"errcode":40226,"errmsg":"high risk user"}`, errCode: 40226, errMsg: "high risk user"},
		{name: "errcode 40013", body: `{"errcode":40013,"errmsg":"invalid appid"}`, errCode: 40013, errMsg: "invalid appid"},
		{name: "errcode 40125", body: `{"errcode":40125,"errmsg":"invalid appsecret"}`, errCode: 40125, errMsg: "invalid appsecret"},
		{name: "errcode with openid", body: `{"errcode":40029,"openid":"o","session_key":"k"}`, errCode: 40029},
		{name: "errmsg over 256 bytes", body: `{"errcode":40029,"errmsg":"` + long + `"}`, errCode: 40029, errMsg: long[:maxErrMsgLen]},
		{name: "errmsg cut inside a rune", body: `{"errcode":40029,"errmsg":"` + han + `"}`, errCode: 40029, errMsg: han[:255] + "?"},
		{name: "errmsg invalid UTF-8", body: "{\"errcode\":40029,\"errmsg\":\"bad \xff\xfe bytes\"}", errCode: 40029, errMsg: "bad \ufffd\ufffd bytes"},
		{name: "errmsg lone surrogate", body: `{"errcode":40029,"errmsg":"\ud800x"}`, errCode: 40029, errMsg: "\ufffdx"},

		{name: "missing openid", body: `{"session_key":"k"}`, code: StatusSessionKeyRequestError},
		{name: "missing session_key", body: `{"openid":"o"}`, code: StatusSessionKeyRequestError},
		{name: "empty openid", body: `{"openid":"","session_key":"k"}`, code: StatusSessionKeyRequestError},
		{name: "empty object", body: `{}`, code: StatusSessionKeyRequestError},
		{name: "JSON null", body: `null`, code: StatusSessionKeyRequestError},
		{name: "openid with pipe", body: `{"openid":"o|sku","session_key":"k"}`, code: StatusSessionKeyRequestError},
		{name: "openid of 300 bytes", body: `{"openid":"` + long + `","session_key":"k"}`, code: StatusSessionKeyRequestError},
		{name: "openid with control char", body: `{"openid":"o\u0000","session_key":"k"}`, code: StatusSessionKeyRequestError},
		{name: "unionid with pipe", body: `{"openid":"o","session_key":"k","unionid":"u|x"}`, code: StatusSessionKeyRequestError},
		{name: "unionid of 300 bytes", body: `{"openid":"o","session_key":"k","unionid":"` + long + `"}`, code: StatusSessionKeyRequestError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				s   session
				err error
			)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("parseSessionReply panicked: %v", r)
					}
				}()
				s, err = parseSessionReply([]byte(tt.body), "")
			}()
			switch {
			case tt.anyErr:
				if err == nil {
					t.Fatalf("parseSessionReply = %+v, nil; want an error", s)
				}
			case tt.errCode != 0:
				var we *WeChatError
				if !errors.As(err, &we) {
					t.Fatalf("err = %v (%T), want a *WeChatError", err, err)
				}
				if we.ErrCode != tt.errCode {
					t.Errorf("ErrCode = %d, want %d", we.ErrCode, tt.errCode)
				}
				if tt.errMsg != "" && we.ErrMsg != tt.errMsg {
					t.Errorf("ErrMsg = %q, want %q", we.ErrMsg, tt.errMsg)
				}
				if len(we.ErrMsg) > maxErrMsgLen || !utf8.ValidString(we.ErrMsg) {
					t.Errorf("ErrMsg = %q: %d bytes, valid UTF-8 %v", we.ErrMsg, len(we.ErrMsg), utf8.ValidString(we.ErrMsg))
				}
			case tt.code != 0:
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v (%T), want an *Error", err, err)
				}
				if e.Code != tt.code {
					t.Errorf("Code = %d, want %d (err %v)", e.Code, tt.code, err)
				}
				if strings.Contains(err.Error(), `"k"`) || strings.Contains(err.Error(), "session_key\":") {
					t.Errorf("error text %q echoes the body", err)
				}
			default:
				if err != nil {
					t.Fatalf("parseSessionReply: %v", err)
				}
				if s != tt.want {
					t.Errorf("parseSessionReply = %+v, want %+v", s, tt.want)
				}
				return
			}
			if s != (session{}) {
				t.Errorf("parseSessionReply returned %+v with its error", s)
			}
		})
	}
}

// TestNewWeChatErrorRedactsBeforeCut checks that the AppSecret is taken
// out of an errmsg before it is cut to maxErrMsgLen bytes: a secret that
// straddles the cut must leave none of itself behind, raw or
// query-escaped, in ErrMsg or in the text of the 6008 that wraps it.
func TestNewWeChatErrorRedactsBeforeCut(t *testing.T) {
	const secret = "top secret/+&=" // 14 bytes, query-escaped 24
	esc := url.QueryEscape(secret)
	tests := []struct {
		name, msg string
	}{
		{"raw secret across the cut", strings.Repeat("x", maxErrMsgLen-7) + secret + " tail"},
		{"escaped secret across the cut", strings.Repeat("x", maxErrMsgLen-12) + esc + " tail"},
		{"raw secret ending at the cut", strings.Repeat("x", maxErrMsgLen-len(secret)+1) + secret},
		{"secret at the start of a long errmsg", secret + strings.Repeat("y", 400)},
		{"secret after a cut rune", strings.Repeat("中", 83) + secret},
		{"secret twice", secret + " " + esc + strings.Repeat("z", 300)},
	}
	parts := []string{secret[:7], secret[7:], esc[:12], esc[12:], "top secret", "top+secret"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, we := range []*WeChatError{
				newWeChatError(40029, tt.msg, secret),
				func() *WeChatError {
					_, err := parseSessionReply([]byte(`{"errcode":40029,"errmsg":"`+tt.msg+`"}`), secret)
					var we *WeChatError
					if !errors.As(err, &we) {
						t.Fatalf("parseSessionReply: %v, want a *WeChatError", err)
					}
					return we
				}(),
			} {
				if we.ErrCode != 40029 {
					t.Errorf("ErrCode = %d", we.ErrCode)
				}
				if len(we.ErrMsg) > maxErrMsgLen || !utf8.ValidString(we.ErrMsg) {
					t.Errorf("ErrMsg is %d bytes, valid UTF-8 %v", len(we.ErrMsg), utf8.ValidString(we.ErrMsg))
				}
				text := we.ErrMsg + "\n" + we.Error() + "\n" + sessionError(we).Error()
				for _, p := range parts {
					if strings.Contains(text, p) {
						t.Errorf("%q is left of the secret in %q", p, text)
					}
				}
			}
		})
	}
}

// TestParseSessionReplyHidesSessionKey checks that a rejected reply's error
// does not carry its session_key.
func TestParseSessionReplyHidesSessionKey(t *testing.T) {
	for _, body := range []string{
		`{"openid":"o|x","session_key":"SECRETSESSIONKEY"}`,
		`{"openid":"","session_key":"SECRETSESSIONKEY"}`,
		`{"openid":"o","session_key":"SECRETSESSIONKEY","unionid":"u|x"}`,
		`{"openid":"o","session_key":"SECRETSESSIONKEY",`,
		`{"errcode":40029,"session_key":"SECRETSESSIONKEY"}`,
	} {
		_, err := parseSessionReply([]byte(body), "")
		if err == nil {
			t.Errorf("%s: no error", body)
			continue
		}
		if strings.Contains(err.Error(), "SECRETSESSIONKEY") {
			t.Errorf("%s: error text %q holds the session_key", body, err)
		}
	}
}

// redactClient is the Client of the redaction tests.
func redactClient() *Client {
	return &Client{appID: "wxapp", secret: "top secret/+&=", sessionURL: "http://127.0.0.1:1/sns/jscode2session"}
}

// requestURL is the URL code2SessionOnce builds for code.
func requestURL(c *Client, code string) string {
	q := url.Values{"appid": {c.appID}, "secret": {c.secret}, "js_code": {code}, "grant_type": {"authorization_code"}}
	return c.sessionURL + "?" + q.Encode()
}

// assertNoSecret fails if s holds c's secret, raw or query-escaped, or code.
func assertNoSecret(t *testing.T, c *Client, s, code string) {
	t.Helper()
	for _, leak := range []string{c.secret, url.QueryEscape(c.secret), url.PathEscape(c.secret), "top secret", "top+secret", "top%20secret", code} {
		if leak != "" && strings.Contains(s, leak) {
			t.Errorf("%q contains %q", s, leak)
		}
	}
}

func TestRedactURLError(t *testing.T) {
	c := redactClient()
	full := requestURL(c, "THECODE")
	if !strings.Contains(full, url.QueryEscape(c.secret)) {
		t.Fatalf("test URL %q lacks the escaped secret", full)
	}
	causes := []struct {
		name string
		err  error
		is   error
		code string // the js_code, when it must not show either
	}{
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded, "THECODE"},
		{"canceled", context.Canceled, context.Canceled, "THECODE"},
		{"cause with raw secret", fmt.Errorf("dial %s: %w", c.secret, context.DeadlineExceeded), context.DeadlineExceeded, "THECODE"},
		// Only the secret is scrubbed from the cause's own text.
		{"cause with URL", fmt.Errorf("Get %q: %w", full, context.DeadlineExceeded), context.DeadlineExceeded, ""},
	}
	for _, cause := range causes {
		t.Run(cause.name, func(t *testing.T) {
			ue := &url.Error{Op: "Get", URL: full, Err: cause.err}
			if !strings.Contains(ue.Error(), url.QueryEscape(c.secret)) {
				t.Fatalf("unredacted error %q lacks the secret", ue)
			}
			err := c.redact(ue)
			assertNoSecret(t, c, err.Error(), cause.code)
			if !errors.Is(err, cause.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, cause.is)
			}
			var got *url.Error
			if !errors.As(err, &got) {
				t.Fatalf("redacted error %T is not a *url.Error", err)
			}
			if got.Op != "Get" {
				t.Errorf("Op = %q, want Get", got.Op)
			}
			if !strings.HasPrefix(got.URL, c.sessionURL) || !strings.Contains(got.URL, "appid=wxapp") {
				t.Errorf("URL = %q, want the session URL with the appid", got.URL)
			}
			// Wrapped the way code2SessionOnce does, the text stays clean.
			wrapped := sessionError(newError(StatusHTTPRequestError, "code2session request failed", err))
			assertNoSecret(t, c, wrapped.Error(), cause.code)
			if !errors.Is(wrapped, cause.is) {
				t.Errorf("errors.Is(%v, %v) = false after wrapping", wrapped, cause.is)
			}
		})
	}
}

// TestRedactKeepsTimeout checks that a redacted *url.Error still reports a
// timeout, as net/http's own *url.Error does: callers test
// errors.As(err, &netErr) && netErr.Timeout().
func TestRedactKeepsTimeout(t *testing.T) {
	c := redactClient()
	ue := &url.Error{Op: "Get", URL: requestURL(c, "THECODE"), Err: context.DeadlineExceeded}
	if !ue.Timeout() {
		t.Fatal("unredacted *url.Error is not a timeout")
	}
	var ne net.Error
	if err := c.redact(ue); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("redacted error %v: Timeout() = false, want true", err)
	}
}

func TestRedactPlainError(t *testing.T) {
	c := redactClient()
	err := c.redact(fmt.Errorf("boom %s / %s: %w", c.secret, url.QueryEscape(c.secret), context.Canceled))
	assertNoSecret(t, c, err.Error(), "")
	if !strings.Contains(err.Error(), "boom REDACTED") {
		t.Errorf("redacted text %q, want the rest kept", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
}

func TestRedactString(t *testing.T) {
	c := redactClient()
	tests := []struct{ in, want string }{
		{"", ""},
		{"nothing secret", "nothing secret"},
		{"raw top secret/+&= here", "raw REDACTED here"},
		{"escaped top+secret%2F%2B%26%3D here", "escaped REDACTED here"},
		{"both top secret/+&= and top+secret%2F%2B%26%3D", "both REDACTED and REDACTED"},
		{"twice top secret/+&=top secret/+&=", "twice REDACTEDREDACTED"},
	}
	for _, tt := range tests {
		if got := c.redactString(tt.in); got != tt.want {
			t.Errorf("redactString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// A Client without a secret leaves the text alone.
	if got := (&Client{}).redactString("a b"); got != "a b" {
		t.Errorf("redactString without a secret = %q", got)
	}
}

// testSessionClient returns a Client whose code2session goes to h.
func testSessionClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Client{
		appID:      "wxapp",
		secret:     "top secret/+&=",
		sessionURL: srv.URL + "/sns/jscode2session",
		hc:         srv.Client(),
		log:        slog.New(slog.DiscardHandler),
	}
}

// TestRedactCode2SessionErrMsg checks that an errmsg echoing the secret is
// redacted, and that the request carries the query-escaped values.
func TestRedactCode2SessionErrMsg(t *testing.T) {
	var c *Client
	c = testSessionClient(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("appid") != c.appID || q.Get("secret") != c.secret || q.Get("js_code") != "a code&x=1" || q.Get("grant_type") != "authorization_code" {
			t.Errorf("query = %v", q)
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, `{"errcode":40125,"errmsg":"invalid appsecret %s / %s"}`, c.secret, url.QueryEscape(c.secret))
	})
	_, err := c.code2Session(context.Background(), "a code&x=1")
	if Code(err) != StatusSessionKeyRequestError {
		t.Fatalf("Code = %d, want 6008 (err %v)", Code(err), err)
	}
	var we *WeChatError
	if !errors.As(err, &we) || we.ErrCode != ErrCodeInvalidSecret {
		t.Fatalf("err = %v, want a *WeChatError 40125", err)
	}
	assertNoSecret(t, c, we.ErrMsg, "")
	assertNoSecret(t, c, err.Error(), "a code&x=1")
}

// TestRedactCode2SessionTimeout checks a real timeout end to end: 6008, the
// deadline reachable with errors.Is, and no secret in the text.
func TestRedactCode2SessionTimeout(t *testing.T) {
	release := make(chan struct{})
	c := testSessionClient(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.code2Session(ctx, "THECODE")
	if Code(err) != StatusSessionKeyRequestError {
		t.Fatalf("Code = %d, want 6008 (err %v)", Code(err), err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
	}
	assertNoSecret(t, c, err.Error(), "THECODE")
}

// TestRedactCode2SessionRefused checks a connection error: 6008 wrapping a
// 6006, no secret in the text.
func TestRedactCode2SessionRefused(t *testing.T) {
	c := redactClient()
	c.hc = &http.Client{Timeout: 5 * time.Second}
	c.log = slog.New(slog.DiscardHandler)
	_, err := c.code2Session(context.Background(), "THECODE")
	if Code(err) != StatusSessionKeyRequestError {
		t.Fatalf("Code = %d, want 6008 (err %v)", Code(err), err)
	}
	var inner *Error
	if u := errors.Unwrap(err); !errors.As(u, &inner) || inner.Code != StatusHTTPRequestError {
		t.Errorf("cause = %v, want a 6006 *Error", u)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("err = %v, want a *url.Error inside", err)
	}
	assertNoSecret(t, c, err.Error(), "THECODE")
}

// TestRedactHidesCausesThatCarryTheSecret checks that no error reachable
// by unwrapping a redacted error holds the secret, while the context error
// under it stays reachable.
func TestRedactHidesCausesThatCarryTheSecret(t *testing.T) {
	c := redactClient()
	var op *net.OpError
	tests := []struct {
		name   string
		cause  error
		is     error
		asOpOK bool // a *net.OpError is still reachable
	}{
		{"secret in a layer", fmt.Errorf("transport: get %s: %w", c.secret, context.DeadlineExceeded), context.DeadlineExceeded, false},
		{"escaped secret deep down", fmt.Errorf("outer: %w", fmt.Errorf("inner %s: %w", url.QueryEscape(c.secret), context.Canceled)), context.Canceled, false},
		{"clean cause", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: context.DeadlineExceeded}), context.DeadlineExceeded, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.redact(&url.Error{Op: "Get", URL: requestURL(c, "THECODE"), Err: tt.cause})
			var walk func(e error)
			walk = func(e error) {
				if e == nil {
					return
				}
				assertNoSecret(t, c, e.Error(), "")
				switch u := e.(type) {
				case interface{ Unwrap() error }:
					walk(u.Unwrap())
				case interface{ Unwrap() []error }:
					for _, e := range u.Unwrap() {
						walk(e)
					}
				}
			}
			walk(err)
			if !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if got := errors.As(err, &op); got != tt.asOpOK {
				t.Errorf("errors.As(%v, *net.OpError) = %v, want %v", err, got, tt.asOpOK)
			}
		})
	}
}
