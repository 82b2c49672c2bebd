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

// tokenRejected reports whether err is WeChat rejecting the access token.
func tokenRejected(err error) bool {
	var we *WeChatError
	if !errors.As(err, &we) {
		return false
	}
	switch we.ErrCode {
	case ErrCodeInvalidAccessToken, ErrCodeMalformedAccessToken, ErrCodeAccessTokenExpired:
		return true
	}
	return false
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
