package mpauthx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// A Douyin mini program's access token is the app's client_token from
// open.douyin.com, shared by the instances exactly like WeChat's (see
// accesstoken.go). Unlike stable_token, every fetch makes a new token:
// the previous one stays valid for 5 more minutes, and Douyin keeps the
// latest two at most.

// Douyin's errors. client_token answers its error_code inside data; the
// mini-program APIs that take the client_token answer err_no, which for a
// token they do not accept is, as third-party SDKs handle it (Douyin's
// published pages do not list it; uncertain), 28001003 (invalid) or
// 28001008 (expired).
const (
	douyinErrBadParams       = 10002    // client_token: a parameter is missing or wrong
	douyinErrNoClientKey     = 10003    // client_token: no such client_key
	douyinErrBadClientSecret = 10013    // client_token: client_key or client_secret is wrong
	douyinErrTooManyTokens   = 10020    // client_token: more than 500 calls in 5 minutes
	douyinErrTokenInvalid    = 28001003 // an API: the access token is invalid
	douyinErrTokenExpired    = 28001008 // an API: the access token has expired
)

// clientTokenRequest is client_token's JSON body.
type clientTokenRequest struct {
	ClientKey    string `json:"client_key"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
}

// clientTokenReply is client_token's JSON reply.
type clientTokenReply struct {
	Data *struct {
		AccessToken string  `json:"access_token"`
		Description string  `json:"description"`
		ErrorCode   int     `json:"error_code"`
		ExpiresIn   seconds `json:"expires_in"`
	} `json:"data"`
	Message string `json:"message"`
}

// seconds is a JSON count of seconds, as a number or a string of digits
// (some of Douyin's replies quote it).
type seconds int64

// UnmarshalJSON accepts 7200 and "7200"; anything else is 0.
func (s *seconds) UnmarshalJSON(b []byte) error {
	n, err := strconv.ParseInt(string(bytes.Trim(b, `"`)), 10, 64)
	if err != nil {
		n = 0
	}
	*s = seconds(n)
	return nil
}

// fetchClientToken makes one client_token request; Douyin has no forced
// refresh, so force changes nothing. Every failure is a
// StatusAccessTokenError *Error wrapping the cause (a *WeChatError
// holding Douyin's error_code and description for an error).
func (c *Client) fetchClientToken(ctx context.Context, _ bool) (*accessToken, error) {
	body, _ := json.Marshal(clientTokenRequest{ClientKey: c.appID, ClientSecret: c.secret, GrantType: "client_credential"})
	start := c.now()
	reply, err := c.callAPI(ctx, http.MethodPost, c.douyinTokenURL, body)
	if err != nil {
		return nil, apiError(StatusAccessTokenError, "client_token", err)
	}
	token, expiresIn, err := parseClientTokenReply(reply)
	var we *WeChatError
	if errors.As(err, &we) {
		return nil, newError(StatusAccessTokenError,
			fmt.Sprintf("%s: client_token: error_code %d (%s)", StatusAccessTokenError.Message(), we.ErrCode, douyinErrText(we.ErrCode)),
			c.cleanWeChatError(err))
	}
	if err != nil {
		return nil, apiError(StatusAccessTokenError, "client_token", err)
	}
	expiry := start.Add(expiresIn)
	return &accessToken{token: token, expiry: expiry, refreshAt: refreshTime(c.now(), expiry)}, nil
}

// parseClientTokenReply parses client_token's body: an *Error (empty, not
// JSON, no usable token or lifetime) or a *WeChatError holding
// data.error_code and data.description.
func parseClientTokenReply(body []byte) (string, time.Duration, error) {
	var r clientTokenReply
	if err := decodeReply(body, "client_token", &r); err != nil {
		return "", 0, err
	}
	if r.Data != nil && r.Data.ErrorCode != 0 {
		return "", 0, &WeChatError{ErrCode: r.Data.ErrorCode, ErrMsg: r.Data.Description}
	}
	if r.Data == nil || !validAccessToken(r.Data.AccessToken) || r.Data.ExpiresIn <= 0 || r.Data.ExpiresIn > 86400 {
		return "", 0, newError(StatusAccessTokenError, "client_token reply lacks a usable access_token or expires_in", nil)
	}
	return r.Data.AccessToken, time.Duration(r.Data.ExpiresIn) * time.Second, nil
}

// douyinErrText describes Douyin's known error codes for Error.Message.
func douyinErrText(code int) string {
	switch code {
	case douyinErrBadParams:
		return "bad parameters"
	case douyinErrNoClientKey:
		return "unknown client_key"
	case douyinErrBadClientSecret:
		return "invalid client_key or client_secret"
	case douyinErrTooManyTokens:
		return "too many client_token calls"
	case douyinErrTokenInvalid:
		return "invalid access token"
	case douyinErrTokenExpired:
		return "access token expired"
	}
	return "Douyin error"
}
