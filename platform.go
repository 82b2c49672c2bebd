package mpauthx

import "context"

// Platform names the kind of app a Client logs people in through. One
// Client serves one app; Clients that share a DB, a Redis and a Sku share
// users and tokens, whatever their platforms (see docs/platforms.md).
type Platform string

// The platforms. The zero value, "", means WeChatMiniProgram.
const (
	WeChatMiniProgram     Platform = "wechat"     // WeChat mini program: code2session (the Node.js original's flow)
	WeChatOfficialAccount Platform = "wechat-oa"  // WeChat official account: OAuth 2 in WeChat's browser (snsapi_base / snsapi_userinfo)
	WeChatWebsite         Platform = "wechat-web" // website QR login (WeChat Open Platform, snsapi_login)
	QQMiniProgram         Platform = "qq"         // QQ mini program
	DouyinMiniProgram     Platform = "douyin"     // Douyin (ByteDance) mini program
	AlipayMiniProgram     Platform = "alipay"     // Alipay mini program
)

// Identity is one app's identifier for a person: the user logged in
// through that app at least once (or was linked to it with Link). A
// login finds its user by its identity (Platform, AppID, OpenID), unique
// to one user, and by its UnionID, which joins the apps of one platform
// family (see docs/identities.md).
type Identity struct {
	Platform Platform `json:"platform"` // never "": WeChatMiniProgram is recorded as "wechat"
	AppID    string   `json:"appId"`
	OpenID   string   `json:"openId"`            // the app's own ID for the person (Alipay: open_id, or user_id for older apps)
	UnionID  string   `json:"unionId,omitempty"` // "" when unknown; in its platform family's namespace (see Platform.family)
}

// normalize returns p with "" read as WeChatMiniProgram.
func (p Platform) normalize() Platform {
	if p == "" {
		return WeChatMiniProgram
	}
	return p
}

// known reports whether p is one of the platforms (or "").
func (p Platform) known() bool {
	switch p.normalize() {
	case WeChatMiniProgram, WeChatOfficialAccount, WeChatWebsite, QQMiniProgram, DouyinMiniProgram, AlipayMiniProgram:
		return true
	}
	return false
}

// family is the namespace of p's unionids: WeChat's unionid spans the mini
// programs, official accounts and websites of one Open Platform account;
// QQ's and Douyin's are their own, and Alipay has none.
func (p Platform) family() string {
	switch p.normalize() {
	case WeChatMiniProgram, WeChatOfficialAccount, WeChatWebsite:
		return "wechat"
	}
	return string(p)
}

// identity is the Identity of a login through c's app.
func (c *Client) identity(openID, unionID string) Identity {
	return Identity{Platform: c.platform, AppID: c.appID, OpenID: openID, UnionID: unionID}
}

// exchange trades a login code of c's platform (wx.login's, tt.login's,
// my.getAuthCode's, or an OAuth callback's) for the person's identifiers
// and, where the platform has one, the session key. Failures are
// StatusSessionKeyRequestError wrapping the cause, as for code2session.
func (c *Client) exchange(ctx context.Context, code string) (session, error) {
	switch c.platform {
	case WeChatMiniProgram:
		return c.code2Session(ctx, code)
	}
	return session{}, errUnsupported(c.platform, "logging in")
}

// errUnsupported is the StatusUnsupported error of a call that p lacks.
func errUnsupported(p Platform, what string) *Error {
	return newError(StatusUnsupported, what+" is not supported on platform "+string(p), nil)
}
