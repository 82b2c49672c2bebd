package mpauthxtest

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The paths of WeChat's OAuth 2 login for official accounts
// ("wechat-oa") and websites ("wechat-web"), relative to Server.URL:
// the browser's pages (what mpauthx.Client.AuthURL points at when
// APIBase is the Server's URL) and the code's exchange.
const (
	OAuthAuthorizePath   = "/connect/oauth2/authorize" // official accounts: snsapi_base or snsapi_userinfo
	OAuthQRConnectPath   = "/connect/qrconnect"        // websites: snsapi_login
	OAuthAccessTokenPath = "/sns/oauth2/access_token"
)

// Scopes of WeChat's OAuth 2 login.
const (
	ScopeBase     = "snsapi_base"     // official account, silent: openid only
	ScopeUserInfo = "snsapi_userinfo" // official account, asks: openid and unionid
	ScopeLogin    = "snsapi_login"    // website QR login: openid and unionid
)

func init() {
	addEndpoint(OAuthAuthorizePath, (*Server).handleAuthorizePage, nil)
	addEndpoint(OAuthQRConnectPath, (*Server).handleAuthorizePage, nil)
	addEndpoint(OAuthAccessTokenPath, (*Server).handleOAuthAccessToken, nil)
}

// oauthReply is sns/oauth2/access_token's successful answer.
type oauthReply struct {
	AccessToken    string `json:"access_token"`
	ExpiresIn      int    `json:"expires_in"`
	RefreshToken   string `json:"refresh_token"`
	OpenID         string `json:"openid"`
	Scope          string `json:"scope"`
	UnionID        string `json:"unionid,omitempty"`
	IsSnapshotUser int    `json:"is_snapshotuser,omitempty"`
}

// handleOAuthAccessToken answers sns/oauth2/access_token for the codes of
// official-account and website users: their openid, their unionid (not
// for a code of scope snsapi_base), and is_snapshotuser 1 for a
// User.SnapshotUser.
func (s *Server) handleOAuthAccessToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if s.fault(w, r, OAuthAccessTokenPath) {
		return
	}
	q := r.URL.Query()
	a, code := s.credentials(q.Get("appid"), q.Get("secret"), platformOA, platformWeb)
	if code == 0 && q.Get("grant_type") != "authorization_code" {
		code = ErrCodeInvalidGrantType
	}
	var u User
	if code == 0 {
		u, code = s.useCode(a.AppID, q.Get("code"))
	}
	if code != 0 {
		writeErr(w, code)
		return
	}
	scope := s.codeScope(q.Get("code"))
	if scope == "" {
		scope = ScopeUserInfo
		if a.Platform == platformWeb {
			scope = ScopeLogin
		}
	}
	reply := oauthReply{
		AccessToken:  newAccessToken(),
		ExpiresIn:    7200,
		RefreshToken: newAccessToken(),
		OpenID:       u.OpenID,
		Scope:        scope,
	}
	if scope != ScopeBase {
		reply.UnionID = u.UnionID
	}
	if u.SnapshotUser {
		reply.IsSnapshotUser = 1
	}
	w.Write(mustJSON(reply))
}

// codeScope returns the scope a code was handed out for by the browser
// page, "" for a code of Code.
func (s *Server) codeScope(code string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.codes[code]; ok {
		return c.scope
	}
	return ""
}

// AuthCallback does what WeChat's page at authURL does when the person
// with openID agrees: it checks authURL (a Client's AuthURL: the page of
// the app's platform, a known appid, a scope of the platform, an
// absolute redirect_uri) and returns the redirect_uri with a fresh code
// and the state added to its query, as the browser would be sent to. With
// openID "", the person refuses: the redirect_uri gets the state alone.
// A test calls its callback handler with the result.
func (s *Server) AuthCallback(authURL, openID string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", err
	}
	return s.authorize(u.Path, u.Query(), openID)
}

// authorize checks an authorization request to path with query q and
// returns where the browser goes next for openID ("" refuses).
func (s *Server) authorize(path string, q url.Values, openID string) (string, error) {
	platform := platformOA
	scopes := []string{ScopeBase, ScopeUserInfo}
	if path == OAuthQRConnectPath {
		platform, scopes = platformWeb, []string{ScopeLogin}
	} else if path != OAuthAuthorizePath {
		return "", fmt.Errorf("mpauthxtest: %q is not WeChat's authorization page", path)
	}
	a, ok := s.app(q.Get("appid"))
	switch {
	case !ok || a.Platform != platform:
		return "", errors.New("mpauthxtest: appid is not a known app of this page's platform")
	case q.Get("response_type") != "code":
		return "", errors.New("mpauthxtest: response_type is not code")
	case !slices.Contains(scopes, q.Get("scope")):
		return "", fmt.Errorf("mpauthxtest: scope %q is not one of %v", q.Get("scope"), scopes)
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" {
		return "", errors.New("mpauthxtest: redirect_uri is not an absolute http(s) URL")
	}
	rq := redirect.Query()
	if openID != "" {
		code, err := s.scopedCode(a.AppID, openID, q.Get("scope"))
		if err != nil {
			return "", err
		}
		rq.Set("code", code)
	}
	rq.Set("state", q.Get("state"))
	redirect.RawQuery = rq.Encode()
	return redirect.String(), nil
}

// scopedCode hands out a code for appID's user openID, of scope.
func (s *Server) scopedCode(appID, openID, scope string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[openID]
	if !ok || s.appOf(u).AppID != appID {
		return "", fmt.Errorf("mpauthxtest: %q is not a user of app %q", openID, appID)
	}
	for {
		c := newCode()
		if _, dup := s.codes[c]; !dup {
			s.codes[c] = &codeState{openID: openID, scope: scope}
			return c, nil
		}
	}
}

// authPage is the Server's authorization page: the app's users, each a
// link that logs them in, and a link that refuses.
var authPage = template.Must(template.New("auth").Parse(`<!doctype html>
<meta charset="utf-8"><title>mpauthxtest: log in to {{.AppID}}</title>
<h1>Log in to {{.AppID}} ({{.Platform}})</h1>
<p>A fake WeChat authorization page: pick who you are.</p>
<ul>{{range .Users}}<li><a href="{{.Link}}">{{.OpenID}}</a>{{if .UnionID}} (unionid {{.UnionID}}){{end}}{{end}}</ul>
<p><a href="{{.Refuse}}">Refuse</a></p>
`))

// handleAuthorizePage answers the browser at OAuthAuthorizePath or
// OAuthQRConnectPath: with ?openid=O (the page's own links) it redirects
// to the redirect_uri with a code of O, with ?refuse=1 without one, and
// otherwise shows the page listing the app's users. A bad request gets
// 400 and the reason.
func (s *Server) handleAuthorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("openid") || q.Has("refuse") {
		next, err := s.authorize(r.URL.Path, q, q.Get("openid"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, next, http.StatusFound)
		return
	}
	if _, err := s.authorize(r.URL.Path, q, ""); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a, _ := s.app(q.Get("appid"))
	type entry struct{ OpenID, UnionID, Link string }
	var users []entry
	s.mu.Lock()
	for _, u := range s.users {
		if s.appOf(u).AppID == a.AppID {
			lq := cloneValues(q)
			lq.Set("openid", u.OpenID)
			users = append(users, entry{OpenID: u.OpenID, UnionID: u.UnionID, Link: r.URL.Path + "?" + lq.Encode()})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(users, func(x, y entry) int { return strings.Compare(x.OpenID, y.OpenID) })
	rq := cloneValues(q)
	rq.Set("refuse", "1")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	authPage.Execute(w, map[string]any{
		"AppID": a.AppID, "Platform": a.Platform, "Users": users,
		"Refuse": r.URL.Path + "?" + rq.Encode(),
	})
}

// cloneValues returns a copy of q.
func cloneValues(q url.Values) url.Values {
	c := make(url.Values, len(q))
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}
