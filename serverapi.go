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
	"strings"
)

// The calls to WeChat's server APIs that take the app's access token
// (getuserphonenumber, checksession) and stable_token share these
// helpers: one request, its reply's errcode, the redaction of the app
// secret and the access token, and the one retry after WeChat rejects the
// token.

// decodeReply parses a WeChat JSON body into v, whatever its
// Content-Type: StatusResponseIsNull when empty, StatusJSONParseError when
// not JSON.
func decodeReply(body []byte, name string, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return newError(StatusResponseIsNull, name+" reply is empty", nil)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return newError(StatusJSONParseError, name+" reply is not JSON", nil)
	}
	return nil
}

// tokenRejected reports whether err is WeChat (or Douyin) rejecting the
// access token.
func tokenRejected(err error) bool {
	var we *WeChatError
	if errors.As(err, &we) {
		switch we.ErrCode {
		case ErrCodeInvalidAccessToken, ErrCodeMalformedAccessToken, ErrCodeAccessTokenExpired, douyinErrTokenInvalid, douyinErrTokenExpired:
			return true
		}
	}
	var de *DouyinError
	return errors.As(err, &de) && (de.ErrNo == douyinErrTokenInvalid || de.ErrNo == douyinErrTokenExpired)
}

// withAccessToken calls f with the app's access token. When WeChat
// rejects the token, it renews it (compare-and-refresh, forced at most
// once for all instances) and calls f once more. f's failures are wrapped
// in an *Error with code; failing to get a token is StatusAccessTokenError.
func (c *Client) withAccessToken(ctx context.Context, code StatusCode, name string, f func(token string) error) error {
	t, err := c.accessToken(ctx, "")
	if err != nil {
		return err
	}
	err = f(t.token)
	if tokenRejected(err) {
		if t, err = c.accessToken(ctx, t.token); err != nil {
			return err
		}
		err = f(t.token)
	}
	if err != nil {
		return apiError(code, name, err)
	}
	return nil
}

// callAPI makes one request to a WeChat API and returns the body of its
// 200 answer (at most maxBodyBytes). Its failures are *Errors with the
// HTTP status codes (6002, 6005, 6006); neither the URL's query nor the
// app secret nor the request's own secrets in hide (the access token, a
// phone code) appear in them, even when the transport quotes the request.
func (c *Client) callAPI(ctx context.Context, method, u string, body []byte, hide ...string) ([]byte, error) {
	return c.callAPIHeader(ctx, method, u, nil, body, hide...)
}

// callAPIHeader is callAPI with header added to the request (such as
// Douyin's access-token); header's values are hidden like hide's.
func (c *Client) callAPIHeader(ctx context.Context, method, u string, header http.Header, body []byte, hide ...string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, newError(StatusHTTPRequestError, "cannot build the request", c.redactAPI(err, u, hide))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
			hide = append(hide[:len(hide):len(hide)], v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, newError(StatusHTTPRequestError, "request failed", c.redactAPI(err, u, hide))
	}
	return c.readReply(resp, u, hide)
}

// readReply returns the body of the platform's answer resp to a request
// to u, and closes it: StatusHTTPError for a status other than 200,
// StatusHTTPResponseError when reading fails or the body exceeds
// maxBodyBytes. hide is as for callAPI.
func (c *Client) readReply(resp *http.Response, u string, hide []string) ([]byte, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		return nil, newError(StatusHTTPError, fmt.Sprintf("%s answered HTTP %d", c.platformName(), resp.StatusCode), nil)
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, newError(StatusHTTPResponseError, "reading the reply failed", c.redactAPI(err, u, hide))
	}
	if len(reply) > maxBodyBytes {
		return nil, newError(StatusHTTPResponseError, "reply exceeds 1 MiB", nil)
	}
	return reply, nil
}

// redactAPI returns err without the request's query and without the app
// secret and the secrets in hide: a *url.Error's URL is cut to its path
// (and the password of APIBase's userinfo, if any, masked), and the text
// of the error it wraps redacted.
func (c *Client) redactAPI(err error, u string, hide []string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		path, _, _ := strings.Cut(u, "?")
		return &url.Error{Op: ue.Op, URL: redactURL(path), Err: c.redact(ue.Err, hide...)}
	}
	return c.redact(err, hide...)
}

// cleanWeChatError returns err with a *WeChatError's errmsg redacted (the
// app secret and the request's secrets in hide, such as the access token
// and a phone code, removed raw and escaped) and then cut, by
// newWeChatError. Other errors are returned as they are.
func (c *Client) cleanWeChatError(err error, hide ...string) error {
	var we *WeChatError
	if !errors.As(err, &we) {
		return err
	}
	return newWeChatError(we.ErrCode, we.ErrMsg, append([]string{c.secret}, hide...)...)
}

// apiError wraps the failure of the WeChat API name in an *Error with
// code, whose message names the cause without its details.
func apiError(code StatusCode, name string, cause error) *Error {
	msg := code.Message()
	if name != "" {
		msg += ": " + name
	}
	var we *WeChatError
	var de *DouyinError
	var e *Error
	switch {
	case errors.As(cause, &we):
		msg = fmt.Sprintf("%s: errcode %d (%s)", msg, we.ErrCode, weChatErrText(we.ErrCode))
	case errors.As(cause, &de):
		msg = fmt.Sprintf("%s: Douyin err_no %d", msg, de.ErrNo)
	case errors.Is(cause, context.DeadlineExceeded):
		msg += ": timed out"
	case errors.Is(cause, context.Canceled):
		msg += ": canceled"
	case errors.As(cause, &e):
		msg += ": " + e.Message
	}
	return newError(code, msg, cause)
}

// CallAPI calls one of WeChat's server APIs with the app's access token
// (see AccessToken), such as
//
//	var r struct{ Result struct{ Suggest string } `json:"result"` }
//	err := c.CallAPI(ctx, http.MethodPost, "/wxa/msg_sec_check",
//		map[string]any{"content": text, "version": 2, "scene": 2, "openid": openID}, &r)
//
// method is the HTTP method ("" means GET, as in net/http). path is
// relative to Config.APIBase and may carry a query; CallAPI adds
// access_token to it. body, when not nil, is sent as JSON (a
// json.RawMessage as it is); reply, when not nil, receives the JSON reply
// (a *[]byte receives the raw body, such as the image of
// wxa/getwxacodeunlimit). When WeChat answers errcode 40001, 42001 or
// 40014 (the access token is invalid or expired), CallAPI renews the
// token, as RenewAccessToken does, and sends the request once more; never
// more than once.
//
// Its errors are *Errors: StatusRequiredParamsMissing for a path that is
// empty, not relative to APIBase (another host, a '.' or '..' segment, a
// '#'), carrying its own access_token or a query that is not '&'-separated
// pairs with valid escapes (a ';' separator, a bad %-escape), or a
// body that is not JSON-encodable; StatusAccessTokenError when no access
// token can be had; otherwise StatusHTTPError, wrapping the cause: a
// *WeChatError for a non-zero errcode (find it with errors.As), an *Error
// with a more precise code for a non-200 (StatusHTTPError), a failed
// request (StatusHTTPRequestError), an unreadable or over 1 MiB body
// (StatusHTTPResponseError), an empty one (StatusResponseIsNull) or one
// that does not decode into reply (StatusJSONParseError), or ctx.Err().
// Neither the app secret nor the access token appears in them. HTTPStatus
// maps them all to 502, but for 6001 (400) and a closed Client (503).
func (c *Client) CallAPI(ctx context.Context, method, path string, body, reply any) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	u, name, err := c.apiURL(path)
	if err != nil {
		return err
	}
	var payload []byte
	if body != nil {
		if payload, err = json.Marshal(body); err != nil {
			return newError(StatusRequiredParamsMissing, "body cannot be encoded as JSON", err)
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	err = c.withAccessToken(ctx, StatusHTTPError, name, func(token string) error {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		raw, err := c.callAPI(ctx, method, u+sep+"access_token="+url.QueryEscape(token), payload, token)
		if err != nil {
			return err
		}
		return c.decodeAPIReply(raw, name, reply, token)
	})
	if err != nil {
		c.logFailure(ctx, err)
		return err
	}
	return nil
}

// apiURL returns the URL of CallAPI's path under APIBase, and the path
// without its query to name the API in errors.
func (c *Client) apiURL(path string) (string, string, error) {
	p, err := url.Parse(path)
	switch {
	case path == "":
		return "", "", newError(StatusRequiredParamsMissing, "path is required", nil)
	case err != nil || !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || p.Scheme != "" || p.Host != "" ||
		strings.Contains(path, "#") || dotSegment(p.Path):
		// Anything else could carry the access token to another host or
		// out of APIBase's path, or (a fragment, even an empty one) keep
		// it from being sent.
		return "", "", newError(StatusRequiredParamsMissing, "path must be an absolute path under APIBase, such as /wxa/msg_sec_check, without '.' or '..' segments or a fragment", nil)
	}
	q, err := url.ParseQuery(p.RawQuery)
	switch {
	case err != nil:
		// A pair Go skips (a ';' separator, a bad escape) is one another
		// server may read, access_token included.
		return "", "", newError(StatusRequiredParamsMissing, "path's query must be pairs separated by '&', with valid escapes", nil)
	case q.Has("access_token"):
		return "", "", newError(StatusRequiredParamsMissing, "path must not carry access_token: CallAPI adds it", nil)
	}
	return c.apiBase + path, p.Path, nil
}

// dotSegment reports whether the (unescaped) path has a "." or ".."
// segment, with '\' read as '/' as some servers do.
func dotSegment(path string) bool {
	for _, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// decodeAPIReply checks a CallAPI reply for a non-zero errcode and
// decodes it into reply.
func (c *Client) decodeAPIReply(raw []byte, name string, reply any, token string) error {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
		var e struct {
			ErrCode int    `json:"errcode"`
			ErrMsg  string `json:"errmsg"`
		}
		if json.Unmarshal(t, &e) == nil && e.ErrCode != 0 {
			return c.cleanWeChatError(&WeChatError{ErrCode: e.ErrCode, ErrMsg: e.ErrMsg}, token)
		}
	}
	switch r := reply.(type) {
	case nil:
		return nil
	case *[]byte:
		*r = raw
		return nil
	}
	return decodeReply(raw, name, reply)
}
