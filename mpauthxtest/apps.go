package mpauthxtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"sync"
)

// App is one app the Server answers for: one Server fakes every platform
// at once, for as many apps as a test adds, so that the Clients of one
// test (a WeChat mini program, an official account, a Douyin mini
// program, ...) all use its URL as their APIBase.
type App struct {
	// Platform is the app's platform, spelled as mpauthx.Platform:
	// "wechat" (or "", a WeChat mini program), "wechat-oa", "wechat-web",
	// "qq", "douyin" or "alipay". Each endpoint answers the appids of its
	// own platforms only (errcode 40013, or the platform's equivalent,
	// for the others), as the real servers know nothing of the others'
	// apps.
	Platform string
	// AppID and AppSecret are the app's credentials; AppID is required
	// and unique on the Server. Alipay apps have no secret.
	AppID, AppSecret string
	// PrivateKey and PublicKey are the app's RSA key pair, PEM (PKCS#8 and
	// PKIX): Alipay apps sign their requests with the private key, and
	// the Server verifies them with the public one; Douyin encrypts phone
	// numbers to the public key, and the app decrypts them with the
	// private one (mpauthx.Config.PrivateKey). AddApp makes a fresh pair
	// for Alipay and Douyin apps when PrivateKey is empty, and derives
	// PublicKey from PrivateKey.
	PrivateKey, PublicKey string
	// AlipayPublicKey is the public key (PEM, PKIX) of the fake Alipay's
	// own key, which signs its replies (mpauthx.Config.AlipayPublicKey).
	// AddApp makes it for Alipay apps; the Server keeps the private half.
	AlipayPublicKey string
	// AESKey is the app's base64 AES content key, with which Alipay
	// encrypts my.getPhoneNumber's response (mpauthx.Config.AESKey).
	// AddApp makes a random 16-byte one for Alipay apps when it is empty.
	AESKey string
}

// The platforms, as App.Platform spells them.
const (
	platformWeChat   = "wechat"
	platformOA       = "wechat-oa"
	platformWeb      = "wechat-web"
	platformQQ       = "qq"
	platformDouyin   = "douyin"
	platformAlipay   = "alipay"
	rsaKeyBits       = 2048
	maxPooledRSAKeys = 16
)

// appState is what the Server keeps of an App: the App as AddApp
// returned it and its keys, parsed.
type appState struct {
	App
	appKey      *rsa.PrivateKey // the app's pair; nil on platforms without one
	platformKey *rsa.PrivateKey // the fake platform's signing key (Alipay); nil elsewhere
}

// normalizePlatform returns p with "" read as "wechat".
func normalizePlatform(p string) string {
	if p == "" {
		return platformWeChat
	}
	return p
}

// AddApp adds an app to the Server and returns it with the keys it
// needs filled in (see App). Users of the app are added with AddUser and
// User.AppID. It panics when a.AppID is empty or already added, or
// a.Platform or a given key is not one, as those are mistakes in the
// test.
func (s *Server) AddApp(a App) App {
	if a.AppID == "" {
		panic("mpauthxtest: AddApp: App.AppID is empty")
	}
	a.Platform = normalizePlatform(a.Platform)
	st := &appState{}
	switch a.Platform {
	case platformWeChat, platformOA, platformWeb, platformQQ:
	case platformDouyin:
		st.appKey = s.rsaKey("AddApp", a.PrivateKey)
	case platformAlipay:
		st.appKey = s.rsaKey("AddApp", a.PrivateKey)
		st.platformKey = s.rsaKey("AddApp", "")
		a.AlipayPublicKey = publicPEM(&st.platformKey.PublicKey)
		if a.AESKey == "" {
			a.AESKey = base64.StdEncoding.EncodeToString(randomBytes(16))
		}
	default:
		panic(fmt.Sprintf("mpauthxtest: AddApp: unknown platform %q", a.Platform))
	}
	if st.appKey != nil {
		if a.PrivateKey == "" {
			a.PrivateKey = privatePEM(st.appKey)
		}
		a.PublicKey = publicPEM(&st.appKey.PublicKey)
	}
	st.App = a
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.apps[a.AppID]; dup {
		panic(fmt.Sprintf("mpauthxtest: AddApp: app %q already added", a.AppID))
	}
	s.apps[a.AppID] = st
	s.appOrder = append(s.appOrder, a.AppID)
	return a
}

// App returns the app with appID, as AddApp returned it (the Server's
// first app is the WeChat mini program of NewServer), and whether there
// is one.
func (s *Server) App(appID string) (App, bool) {
	return s.app(appID)
}

// app returns the app with appID and whether there is one.
func (s *Server) app(appID string) (App, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.apps[appID]
	if !ok {
		return App{}, false
	}
	return st.App, true
}

// appKeys returns the app's RSA key pair and the fake platform's signing
// key (nil where the platform has none), and whether the app exists.
func (s *Server) appKeys(appID string) (app, platform *rsa.PrivateKey, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.apps[appID]
	if !ok {
		return nil, nil, false
	}
	return st.appKey, st.platformKey, true
}

// appOf returns the app of u (the first app when u.AppID is ""). s.mu
// must be held.
func (s *Server) appOf(u User) *appState {
	if u.AppID == "" {
		return s.apps[s.appOrder[0]]
	}
	return s.apps[u.AppID]
}

// credentials checks an app's credentials as an endpoint of platforms
// sees them: 0 when appID is an app of one of platforms and secret its
// AppSecret, else ErrCodeInvalidAppID or ErrCodeInvalidSecret (WeChat's
// errcodes; endpoints of other platforms map them to their own).
func (s *Server) credentials(appID, secret string, platforms ...string) (App, int) {
	a, ok := s.app(appID)
	if !ok || !hasPlatform(a.Platform, platforms) {
		return App{}, ErrCodeInvalidAppID
	}
	if secret != a.AppSecret {
		return App{}, ErrCodeInvalidSecret
	}
	return a, 0
}

// hasPlatform reports whether p is one of platforms.
func hasPlatform(p string, platforms []string) bool {
	for _, q := range platforms {
		if p == q {
			return true
		}
	}
	return false
}

// useCode uses up a login code of appID's app (wx.login's, tt.login's,
// my.getAuthCode's, or an OAuth callback's) and returns its user, or a
// WeChat errcode that endpoints of other platforms map to their own: 0
// for success, ErrCodeInvalidCode for an unknown code or one of another
// app, ErrCodeCodeUsed for a code already used. An empty code is
// ErrCodeMissingCode.
func (s *Server) useCode(appID, code string) (User, int) {
	if code == "" {
		return User{}, ErrCodeMissingCode
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	if !ok {
		return User{}, ErrCodeInvalidCode
	}
	u, ok := s.users[c.openID]
	if !ok || s.appOf(u).AppID != appID {
		return User{}, ErrCodeInvalidCode
	}
	if c.used {
		return User{}, ErrCodeCodeUsed
	}
	c.used = true
	return u, 0
}

// usePhoneCode uses up a phone code of appID's app (PhoneCode's) and
// returns its user, or ErrCodeInvalidCode for a code that is unknown, of
// another app, used or older than PhoneCodeLifetime.
func (s *Server) usePhoneCode(appID, code string) (User, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.phoneCodes[code]
	if !ok || p.used || s.clock().Sub(p.issued) > PhoneCodeLifetime {
		return User{}, ErrCodeInvalidCode
	}
	u, ok := s.users[p.openID]
	if !ok || s.appOf(u).AppID != appID {
		return User{}, ErrCodeInvalidCode
	}
	p.used = true
	return u, 0
}

// endpoint is a path the Server answers: its handler, and how a Fault's
// ErrCode is written there (nil: WeChat's {"errcode","errmsg"}).
type endpoint struct {
	handle  func(*Server, http.ResponseWriter, *http.Request)
	errBody func(code int, msg string) []byte
}

// endpoints are the paths every Server answers; each file adds its own
// in init with addEndpoint, and FailNextAt accepts exactly these paths.
var endpoints = map[string]endpoint{}

// addEndpoint registers the handler of path. errBody writes a Fault's
// ErrCode in the platform's shape; nil means WeChat's.
func addEndpoint(path string, handle func(*Server, http.ResponseWriter, *http.Request), errBody func(code int, msg string) []byte) {
	if _, dup := endpoints[path]; dup {
		panic("mpauthxtest: endpoint " + path + " registered twice")
	}
	endpoints[path] = endpoint{handle: handle, errBody: errBody}
}

// keyPool holds the RSA keys AddApp hands out: making a key takes about
// 0.1 s, so keys are made once per process and reused by every Server
// (the n-th key a Server asks for is the pool's n-th), which keeps the
// keys of one Server distinct.
var keyPool struct {
	sync.Mutex
	keys []*rsa.PrivateKey
}

// rsaKey returns the RSA key of pemKey, or the Server's next distinct
// key from keyPool when pemKey is empty.
func (s *Server) rsaKey(caller, pemKey string) *rsa.PrivateKey {
	if pemKey != "" {
		k, err := parsePrivateKey(pemKey)
		if err != nil {
			panic("mpauthxtest: " + caller + ": App.PrivateKey: " + err.Error())
		}
		return k
	}
	s.mu.Lock()
	n := s.keysUsed
	s.keysUsed++
	s.mu.Unlock()
	if n >= maxPooledRSAKeys {
		k, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
		if err != nil {
			panic("mpauthxtest: " + err.Error())
		}
		return k
	}
	keyPool.Lock()
	defer keyPool.Unlock()
	for len(keyPool.keys) <= n {
		k, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
		if err != nil {
			panic("mpauthxtest: " + err.Error())
		}
		keyPool.keys = append(keyPool.keys, k)
	}
	return keyPool.keys[n]
}

// parsePrivateKey reads an RSA private key in PEM (PKCS#1 or PKCS#8) or
// bare base64 DER.
func parsePrivateKey(s string) (*rsa.PrivateKey, error) {
	der := []byte(nil)
	if b, _ := pem.Decode([]byte(s)); b != nil {
		der = b.Bytes
	} else {
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor base64")
		}
		der = d
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not an RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an RSA private key")
	}
	return rk, nil
}

// privatePEM is k as PEM, PKCS#8.
func privatePEM(k *rsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// publicPEM is k as PEM, PKIX.
func publicPEM(k *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
