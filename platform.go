package mpauthx

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

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

// The platforms' API servers, used when Config.APIBase is "". With
// APIBase set, every endpoint of every platform is under it, so that one
// mpauthxtest.Server serves them all.
const (
	// DefaultQQAPIBase is QQ's API server (code2session).
	DefaultQQAPIBase = "https://api.q.qq.com"
	// DefaultDouyinAPIBase is Douyin's mini-program API server
	// (code2session).
	DefaultDouyinAPIBase = "https://developer.toutiao.com"
	// DefaultDouyinOpenAPIBase is Douyin's open platform (client_token,
	// phone numbers).
	DefaultDouyinOpenAPIBase = "https://open.douyin.com"
	// DefaultAlipayAPIBase is Alipay's open API gateway.
	DefaultAlipayAPIBase = "https://openapi.alipay.com"
	// DefaultWeChatOpenBase is where WeChat's browser logins start (the
	// AuthURL of official accounts and websites).
	DefaultWeChatOpenBase = "https://open.weixin.qq.com"
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

// call is a Client method that exists on some platforms only.
type call int

// The calls of the table "Which calls exist where" (docs/platforms.md).
// AuthorizeCode, RefreshToken, the token checks and User exist on every
// platform.
const (
	callAuthorize       call = iota // Authorize: encryptedData
	callPhone                       // AuthorizePhone and PhoneNumber
	callAccessToken                 // AccessToken and RenewAccessToken
	callDecrypt                     // Decrypt: needs a session key
	callCheckSessionKey             // CheckSessionKey: WeChat's wxa/checksession
	callAuthURL                     // AuthURL: a browser login
)

// callNames name the calls in StatusUnsupported errors.
var callNames = [...]string{
	callAuthorize:       "Authorize (encryptedData)",
	callPhone:           "the phone-number login",
	callAccessToken:     "AccessToken",
	callDecrypt:         "Decrypt",
	callCheckSessionKey: "CheckSessionKey",
	callAuthURL:         "AuthURL",
}

// has reports whether x exists on p.
func (p Platform) has(x call) bool {
	switch p.normalize() {
	case WeChatMiniProgram:
		return x != callAuthURL
	case WeChatOfficialAccount:
		return x == callAccessToken || x == callAuthURL
	case WeChatWebsite:
		return x == callAuthURL
	case QQMiniProgram:
		return x == callAuthorize || x == callDecrypt
	case DouyinMiniProgram:
		return x == callAuthorize || x == callPhone || x == callAccessToken || x == callDecrypt
	case AlipayMiniProgram:
		return x == callPhone
	}
	return false
}

// supports returns nil when x exists on c's platform, else its
// StatusUnsupported error, before any network call.
func (c *Client) supports(x call) error {
	if c.platform.has(x) {
		return nil
	}
	return errUnsupported(c.platform, callNames[x])
}

// errUnsupported is the StatusUnsupported error of a call that p lacks.
func errUnsupported(p Platform, what string) *Error {
	return newError(StatusUnsupported, what+" is not supported on platform "+string(p), nil)
}

// platformConfig is what a Client holds of its platform beyond a WeChat
// mini program's endpoints: the other endpoints and the keys.
type platformConfig struct {
	authorizeURL     string // AuthURL's page; "" where there is none
	oauthURL         string // official account and website: sns/oauth2/access_token
	douyinSessionURL string // Douyin: code2session v2
	douyinPhoneURL   string // Douyin: get_phonenumber_info
	douyinTokenURL   string // Douyin: client_token
	alipayURL        string // Alipay: the gateway

	privateKey *rsa.PrivateKey // Config.PrivateKey; nil when not given
	alipayKey  *rsa.PublicKey  // Config.AlipayPublicKey; nil when not given
	aesKey     []byte          // Config.AESKey, decoded; nil when not given
}

// defaultAPIBase is the API server of p when Config.APIBase is "".
func defaultAPIBase(p Platform) string {
	switch p.normalize() {
	case QQMiniProgram:
		return DefaultQQAPIBase
	case DouyinMiniProgram:
		return DefaultDouyinAPIBase
	case AlipayMiniProgram:
		return DefaultAlipayAPIBase
	}
	return DefaultAPIBase
}

// checkPlatform checks the fields of cfg that depend on its platform: the
// AppSecret (not used on Alipay) and the keys each platform needs or
// refuses. It returns a plain error naming the field.
func checkPlatform(cfg *Config) error {
	p := cfg.Platform.normalize()
	if p != AlipayMiniProgram && cfg.AppSecret == "" {
		return errors.New("mpauthx: Config.AppSecret is required")
	}
	notUsed := func(field string) error {
		return fmt.Errorf("mpauthx: Config.%s is not used on platform %q: leave it empty", field, p)
	}
	switch p {
	case AlipayMiniProgram:
		if cfg.PrivateKey == "" {
			return errors.New("mpauthx: Config.PrivateKey is required on Alipay: it signs every request")
		}
		if cfg.AlipayPublicKey == "" {
			return errors.New("mpauthx: Config.AlipayPublicKey is required on Alipay: it verifies every reply")
		}
	case DouyinMiniProgram:
		if cfg.AlipayPublicKey != "" {
			return notUsed("AlipayPublicKey")
		}
		if cfg.AESKey != "" {
			return notUsed("AESKey")
		}
	default:
		switch {
		case cfg.PrivateKey != "":
			return notUsed("PrivateKey")
		case cfg.AlipayPublicKey != "":
			return notUsed("AlipayPublicKey")
		case cfg.AESKey != "":
			return notUsed("AESKey")
		}
	}
	return nil
}

// newPlatformConfig returns the endpoints of cfg's platform under base
// (Config.APIBase, or the platform's default when apiBase is false) and
// its keys, parsed. Its errors name the field and never quote a key.
func newPlatformConfig(cfg *Config, base string, apiBase bool) (platformConfig, error) {
	var pc platformConfig
	under := func(dflt string) string {
		if apiBase {
			return base
		}
		return dflt
	}
	switch cfg.Platform.normalize() {
	case WeChatOfficialAccount:
		pc.authorizeURL = under(DefaultWeChatOpenBase) + "/connect/oauth2/authorize"
		pc.oauthURL = base + "/sns/oauth2/access_token"
	case WeChatWebsite:
		pc.authorizeURL = under(DefaultWeChatOpenBase) + "/connect/qrconnect"
		pc.oauthURL = base + "/sns/oauth2/access_token"
	case DouyinMiniProgram:
		pc.douyinSessionURL = base + "/api/apps/v2/jscode2session"
		pc.douyinPhoneURL = under(DefaultDouyinOpenAPIBase) + "/api/apps/v1/get_phonenumber_info/"
		pc.douyinTokenURL = under(DefaultDouyinOpenAPIBase) + "/oauth/client_token/"
	case AlipayMiniProgram:
		pc.alipayURL = base + "/gateway.do"
	}
	var err error
	if cfg.PrivateKey != "" {
		if pc.privateKey, err = parseRSAPrivateKey(cfg.PrivateKey); err != nil {
			return pc, fmt.Errorf("mpauthx: Config.PrivateKey: %w", err)
		}
	}
	if cfg.AlipayPublicKey != "" {
		if pc.alipayKey, err = parseRSAPublicKey(cfg.AlipayPublicKey); err != nil {
			return pc, fmt.Errorf("mpauthx: Config.AlipayPublicKey: %w", err)
		}
	}
	if cfg.Platform == AlipayMiniProgram {
		if err := checkAlipayKeys(pc.privateKey, pc.alipayKey); err != nil {
			return pc, err
		}
	}
	if cfg.AESKey != "" {
		k, err := base64.StdEncoding.DecodeString(cfg.AESKey)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return pc, errors.New("mpauthx: Config.AESKey is not the base64 of a 16, 24 or 32-byte AES key")
		}
		pc.aesKey = k
	}
	return pc, nil
}

// identity is the Identity of a login through c's app.
func (c *Client) identity(openID, unionID string) Identity {
	return Identity{Platform: c.platform, AppID: c.appID, OpenID: openID, UnionID: unionID}
}

// exchange trades a login code of c's platform (wx.login's, qq.login's,
// tt.login's, my.getAuthCode's, or an OAuth callback's) for the person's
// identifiers and, where the platform has one, the session key. Failures
// are StatusSessionKeyRequestError wrapping the cause, as for
// code2session: a *WeChatError (WeChat, QQ) or *DouyinError for the
// platform's error code.
func (c *Client) exchange(ctx context.Context, code string) (session, error) {
	switch c.platform {
	case WeChatMiniProgram, QQMiniProgram:
		return c.code2Session(ctx, code)
	case WeChatOfficialAccount, WeChatWebsite:
		return c.retryBusy(ctx, "sns/oauth2/access_token", func() (session, error) { return c.oauthOnce(ctx, code) })
	case DouyinMiniProgram:
		return c.retryBusy(ctx, "jscode2session", func() (session, error) { return c.douyinSessionOnce(ctx, code) })
	case AlipayMiniProgram:
		return c.alipayLogin(ctx, code)
	}
	return session{}, errUnsupported(c.platform, "logging in")
}

// phone exchanges a phone code of c's platform for the person's verified
// phone number; openID, when not "", is the person's, for platforms that
// check the code against it (WeChat). Failures are StatusPhoneNumberError
// wrapping the cause, StatusAccessTokenError when the API's token cannot
// be had.
func (c *Client) phone(ctx context.Context, phoneCode, openID string) (Phone, error) {
	switch c.platform {
	case WeChatMiniProgram:
		return c.phoneNumber(ctx, phoneCode, openID)
	case DouyinMiniProgram:
		return c.douyinPhone(ctx, phoneCode)
	case AlipayMiniProgram:
		return c.alipayPhone(phoneCode) // Alipay's response names no one: openID cannot be checked
	}
	return Phone{}, errUnsupported(c.platform, callNames[callPhone])
}

// retryBusy runs once, a login code's exchange, and retries it up to
// maxBusyRetries times, with backoff, while the platform answers busy
// (WeChat's and QQ's errcode -1, Douyin's err_no -1), unless ctx's
// deadline would pass during the wait. A code answered busy was not
// used, so retrying it is safe. Every failure is a
// StatusSessionKeyRequestError wrapping the cause.
func (c *Client) retryBusy(ctx context.Context, name string, once func() (session, error)) (session, error) {
	backoff := busyBackoff
	for attempt := 0; ; attempt++ {
		s, err := once()
		if err == nil {
			return s, nil
		}
		if !platformBusy(err) || attempt >= maxBusyRetries {
			return session{}, sessionError(err)
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < backoff {
			// ctx would end during the backoff: give up now.
			return session{}, sessionError(fmt.Errorf("%w: %w", context.DeadlineExceeded, err))
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: "+c.platformName()+" busy, retrying "+name,
			slog.Int("attempt", attempt+1), slog.Duration("backoff", backoff))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return session{}, sessionError(fmt.Errorf("%w: %w", ctx.Err(), err))
		case <-t.C:
		}
		backoff *= 2
	}
}

// platformBusy reports whether err is the platform saying it is busy.
func platformBusy(err error) bool {
	var we *WeChatError
	var de *DouyinError
	return errors.As(err, &we) && we.ErrCode == ErrCodeBusy || errors.As(err, &de) && de.ErrNo == DouyinErrSystem
}

// codeRejected reports whether err is a platform refusing a login or
// phone code as invalid, expired or already used (a button tapped twice,
// a stale page): the person's to retry, not the service's fault.
func codeRejected(err error) bool {
	var we *WeChatError
	var de *DouyinError
	switch {
	case errors.As(err, &we):
		return we.ErrCode == ErrCodeInvalidCode || we.ErrCode == ErrCodeCodeUsed
	case errors.As(err, &de):
		return de.ErrNo == DouyinErrBadCode
	}
	return alipayCodeRefused(err)
}

// platformName is c's platform as the log and error texts name it.
func (c *Client) platformName() string {
	switch c.platform {
	case QQMiniProgram:
		return "QQ"
	case DouyinMiniProgram:
		return "Douyin"
	case AlipayMiniProgram:
		return "Alipay"
	}
	return "WeChat"
}
