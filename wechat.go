package mpauthx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// session is what code2session gives for a code. sessionKey is a secret: it
// never leaves the package.
type session struct {
	openID     string
	unionID    string
	sessionKey string
}

// sessionReply is code2session's JSON body.
type sessionReply struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid"`
	ErrCode    int    `json:"errcode"`
	ErrMsg     string `json:"errmsg"`
}

// maxErrMsgLen caps the errmsg kept from a WeChat error.
const maxErrMsgLen = 256

// code2Session exchanges a wx.login (or qq.login) code for the user's
// openid and session_key. Every failure is an *Error with code
// StatusSessionKeyRequestError that wraps the cause: an *Error with a more
// precise code for HTTP faults, a *WeChatError for an errcode, or ctx.Err().
// errcode -1 (busy) is retried up to maxBusyRetries times, with backoff,
// unless ctx's deadline would pass during the wait (see retryBusy).
func (c *Client) code2Session(ctx context.Context, code string) (session, error) {
	return c.retryBusy(ctx, "code2session", func() (session, error) { return c.code2SessionOnce(ctx, code) })
}

// sessionError wraps a code2session failure in a 6008 *Error whose message
// names the cause without its details.
func sessionError(cause error) *Error {
	return apiError(StatusSessionKeyRequestError, "", cause)
}

// code2SessionOnce makes one code2session request.
func (c *Client) code2SessionOnce(ctx context.Context, code string) (session, error) {
	// The query url.Values.Encode would write (keys sorted), without
	// building and sorting a map per login.
	q := "?appid=" + url.QueryEscape(c.appID) + "&grant_type=authorization_code&js_code=" + url.QueryEscape(code) +
		"&secret=" + url.QueryEscape(c.secret)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.sessionURL+q, nil)
	if err != nil {
		return session{}, newError(StatusHTTPRequestError, "cannot build the code2session request", c.redact(err, code))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return session{}, newError(StatusHTTPRequestError, "code2session request failed", c.redact(err, code))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		return session{}, newError(StatusHTTPError, fmt.Sprintf("%s answered HTTP %d", c.platformName(), resp.StatusCode), nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return session{}, newError(StatusHTTPResponseError, "reading the code2session reply failed", c.redact(err, code))
	}
	if len(body) > maxBodyBytes {
		return session{}, newError(StatusHTTPResponseError, "code2session reply exceeds 1 MiB", nil)
	}
	return parseSessionReply(body, c.secret, code)
}

// parseSessionReply parses code2session's body, whatever its Content-Type.
// It returns an *Error (empty body, not JSON, openid or session_key missing
// or unusable) or a *WeChatError for a non-zero errcode, made by
// newWeChatError with secrets (the app secret and the login code).
func parseSessionReply(body []byte, secrets ...string) (session, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return session{}, newError(StatusResponseIsNull, "code2session reply is empty", nil)
	}
	var r sessionReply
	if err := json.Unmarshal(body, &r); err != nil {
		return session{}, newError(StatusJSONParseError, "code2session reply is not JSON", nil)
	}
	if r.ErrCode != 0 {
		return session{}, newWeChatError(r.ErrCode, r.ErrMsg, secrets...)
	}
	if r.OpenID == "" || r.SessionKey == "" {
		return session{}, newError(StatusSessionKeyRequestError, "code2session reply lacks openid or session_key", nil)
	}
	if !validUserID(r.OpenID) || (r.UnionID != "" && !validUserID(r.UnionID)) {
		return session{}, newError(StatusSessionKeyRequestError, "code2session reply has an unusable openid or unionid", nil)
	}
	return session{openID: r.OpenID, unionID: r.UnionID, sessionKey: r.SessionKey}, nil
}

// redact returns err with the app secret, and the request's own secrets
// in extra (the login code), removed from its text. A *url.Error carries
// the whole URL, secret and code included: its URL is replaced by one
// whose secret and js_code read REDACTED (and whose userinfo password, if
// APIBase has one, is masked). errors.Is and errors.As still reach the
// original causes (a context error, a *net.OpError), except a cause whose
// own text holds one of the secrets.
func (c *Client) redact(err error, extra ...string) error {
	h := c.hide(extra...)
	var ue *url.Error
	if errors.As(err, &ue) {
		u := redactURL(c.sessionURL) + "?appid=" + url.QueryEscape(c.appID) + "&secret=REDACTED&js_code=REDACTED&grant_type=authorization_code"
		return &url.Error{Op: ue.Op, URL: u, Err: redactedError{err: ue.Err, h: h}}
	}
	return redactedError{err: err, h: h}
}

// newWeChatError is the *WeChatError of an errcode and errmsg from any of
// WeChat's APIs. secrets (the AppSecret, and the request's access token
// and code) are removed from errmsg before errmsg is cut to maxErrMsgLen
// bytes and made valid UTF-8, so that no part of a secret that straddles
// the cut survives. Every WeChat endpoint builds its *WeChatError here.
func newWeChatError(errCode int, errMsg string, secrets ...string) *WeChatError {
	msg := newHidden(secrets...).redact(errMsg)
	if len(msg) > maxErrMsgLen {
		msg = msg[:maxErrMsgLen]
	}
	return &WeChatError{ErrCode: errCode, ErrMsg: strings.ToValidUTF8(msg, "?")}
}

// redactURL returns raw with the password of its userinfo (an APIBase
// such as http://user:pw@proxy) masked, as url.URL.Redacted does, for
// error texts. A raw URL that does not parse is not shown at all.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// redactString removes the app secret, raw and escaped, from s.
func (c *Client) redactString(s string) string { return redactSecret(s, c.secret) }

// redactSecret removes secret from s: raw, query-escaped (as in a URL)
// and JSON-escaped (as in a request body).
func redactSecret(s, secret string) string {
	if secret == "" {
		return s
	}
	s = strings.ReplaceAll(s, secret, "REDACTED")
	if esc := url.QueryEscape(secret); esc != secret {
		s = strings.ReplaceAll(s, esc, "REDACTED")
	}
	if b, err := json.Marshal(secret); err == nil {
		if esc := string(b[1 : len(b)-1]); esc != secret {
			s = strings.ReplaceAll(s, esc, "REDACTED")
		}
	}
	return s
}

// hidden is what an error's text must not show: the app secret and a
// request's own secrets (an access token, a login or phone code), longest
// first, so that removing a shorter one never breaks the match of a
// longer one that contains it.
type hidden []string

// newHidden returns secrets as a hidden, without the empty ones.
func newHidden(secrets ...string) hidden {
	h := make(hidden, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			h = append(h, s)
		}
	}
	slices.SortStableFunc(h, func(a, b string) int { return len(b) - len(a) })
	return h
}

// hide returns the app secret and extra as a hidden.
func (c *Client) hide(extra ...string) hidden {
	return newHidden(append([]string{c.secret}, extra...)...)
}

// redact removes every secret of h from s.
func (h hidden) redact(s string) string {
	for _, secret := range h {
		s = redactSecret(s, secret)
	}
	return s
}

// carried reports whether the text of err or of any error it wraps holds
// one of h's secrets.
func (h hidden) carried(err error) bool {
	if err == nil {
		return false
	}
	if s := err.Error(); h.redact(s) != s {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return h.carried(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if h.carried(e) {
				return true
			}
		}
	}
	return false
}

// redactedError hides the secrets of h in the text of err. err stays
// reachable by errors.Is and errors.As unless one of its layers carries a
// secret in its own text (a custom transport that quotes the URL or the
// body): then only the context errors it wraps are reachable, so that
// unwrapping the error can never bring the secret back.
type redactedError struct {
	err error
	h   hidden
}

func (e redactedError) Error() string { return e.h.redact(e.err.Error()) }

func (e redactedError) Unwrap() []error {
	if !e.h.carried(e.err) {
		return []error{e.err}
	}
	var keep []error
	for _, end := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(e.err, end) {
			keep = append(keep, end)
		}
	}
	return keep
}

// Timeout reports whether the hidden error is a timeout, so that
// (*url.Error).Timeout keeps working after redaction.
func (e redactedError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}
