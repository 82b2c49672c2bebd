package mpauthx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// A WeChat official account (web pages opened in WeChat) and a website
// (QR login) log people in with OAuth 2: AuthURL sends the browser to
// WeChat, which sends it back to the redirect URI with a code and the
// state; AuthorizeCode trades the code at sns/oauth2/access_token for the
// person's openid (and unionid). mpauthx does not call sns/userinfo: the
// unionid comes with the code's exchange for snsapi_userinfo and
// snsapi_login, and of the profile WeChat no longer fills in anything but
// the nickname and avatar, which AuthorizeCode does not store on any
// platform; each login saves a round trip. The OAuth access token
// WeChat hands out with the openid is not kept.

// ErrSnapshotUser is the cause of the StatusSessionKeyRequestError of an
// official-account login by a visitor of a snapshot page (WeChat's
// is_snapshotuser: 1, a page shared to Moments and opened there before
// the visitor opened the full page): the openid and unionid WeChat gives
// such a visitor are not the person's, so mpauthx never logs them in or
// links them. Ask the visitor to open the full page and log in again.
var ErrSnapshotUser = errors.New("mpauthx: a snapshot-page visitor: WeChat's IDs are not the person's")

// AuthURL is where to send a browser to log in, on an official account
// (scope snsapi_userinfo, which gives the unionid) or a website (the QR
// page of snsapi_login), in the spirit of oauth2.Config.AuthCodeURL.
//
// The caller makes a random state (WeChat takes at most 128 letters and
// digits), keeps it in a cookie and, on the callback to redirectURI,
// compares the callback's state with the cookie's before calling
// AuthorizeCode with the callback's code, so that no one can log a
// browser in with a code of their own (CSRF); a callback without a code
// is the person refusing. redirectURI must be under the domain configured
// for the app in WeChat's console. The demo shows it all
// (cmd/mpauthx-demo).
//
// On the other platforms, which have no browser login, AuthURL returns "".
// With Config.APIBase set, the page is under it: an mpauthxtest.Server
// answers it with a page that logs in one of the app's users.
func (c *Client) AuthURL(redirectURI, state string) string {
	if c.supports(callAuthURL) != nil {
		return ""
	}
	scope := "snsapi_userinfo"
	if c.platform == WeChatWebsite {
		scope = "snsapi_login"
	}
	// WeChat wants the parameters in this order.
	return c.authorizeURL + "?appid=" + url.QueryEscape(c.appID) +
		"&redirect_uri=" + url.QueryEscape(redirectURI) +
		"&response_type=code&scope=" + scope +
		"&state=" + url.QueryEscape(state) + "#wechat_redirect"
}

// oauthReply is sns/oauth2/access_token's JSON body. Its access_token and
// refresh_token are not read.
type oauthReply struct {
	OpenID         string          `json:"openid"`
	UnionID        string          `json:"unionid"`
	IsSnapshotUser json.RawMessage `json:"is_snapshotuser"`
	ErrCode        int             `json:"errcode"`
	ErrMsg         string          `json:"errmsg"`
}

// oauthOnce makes one sns/oauth2/access_token request for an official
// account's or website's OAuth code.
func (c *Client) oauthOnce(ctx context.Context, code string) (session, error) {
	q := url.Values{
		"appid":      {c.appID},
		"secret":     {c.secret},
		"code":       {code},
		"grant_type": {"authorization_code"},
	}
	body, err := c.callAPI(ctx, http.MethodGet, c.oauthURL+"?"+q.Encode(), nil, code)
	if err != nil {
		return session{}, err
	}
	return parseOAuthReply(body, c.secret, code)
}

// parseOAuthReply parses sns/oauth2/access_token's body, whatever its
// Content-Type: an *Error (empty, not JSON, no usable openid, a snapshot
// visitor wrapping ErrSnapshotUser) or a *WeChatError for an errcode,
// made by newWeChatError with secrets (the app secret and the code).
func parseOAuthReply(body []byte, secrets ...string) (session, error) {
	var r oauthReply
	if err := decodeReply(body, "sns/oauth2/access_token", &r); err != nil {
		return session{}, err
	}
	if r.ErrCode != 0 {
		return session{}, newWeChatError(r.ErrCode, r.ErrMsg, secrets...)
	}
	if snapshotUser(r.IsSnapshotUser) {
		return session{}, newError(StatusSessionKeyRequestError, "a snapshot-page visitor cannot log in", ErrSnapshotUser)
	}
	if r.OpenID == "" {
		return session{}, newError(StatusSessionKeyRequestError, "sns/oauth2/access_token reply lacks openid", nil)
	}
	if !validUserID(r.OpenID) || (r.UnionID != "" && !validUserID(r.UnionID)) {
		return session{}, newError(StatusSessionKeyRequestError, "sns/oauth2/access_token reply has an unusable openid or unionid", nil)
	}
	return session{openID: r.OpenID, unionID: r.UnionID}, nil
}

// snapshotUser reports whether is_snapshotuser marks a snapshot visitor:
// anything but absent, null, 0 or false (WeChat sends the number 1), so
// that an unexpected spelling refuses rather than logs in.
func snapshotUser(raw json.RawMessage) bool {
	v := bytes.TrimSpace(raw)
	switch string(v) {
	case "", "null", "0", "false":
		return false
	}
	return true
}
