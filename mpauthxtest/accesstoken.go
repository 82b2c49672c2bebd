package mpauthxtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
)

// The paths of WeChat's server APIs the Server answers besides
// code2session, relative to Server.URL. getuserphonenumber and
// checksession take the access token of stable_token.
const (
	StableTokenPath  = "/cgi-bin/stable_token"
	PhoneNumberPath  = "/wxa/business/getuserphonenumber"
	CheckSessionPath = "/wxa/checksession"
)

// Error codes of the server APIs, answered by the Server on its own. As
// for code2session's, those that mpauthx also names are its constants.
const (
	ErrCodeInvalidAccessToken = mpauthx.ErrCodeInvalidAccessToken // the access token is unknown or was ended
	ErrCodeInvalidOpenID      = mpauthx.ErrCodeInvalidOpenID      // the openid is not the code's user, or unknown
	ErrCodeAccessTokenExpired = mpauthx.ErrCodeAccessTokenExpired // the access token has expired
	ErrCodeMissingAccessToken = 41001                             // access_token is missing
	ErrCodeRequirePOST        = 43002                             // the API takes POST
	ErrCodeDailyQuota         = mpauthx.ErrCodeDailyQuota         // more than 20 forced refreshes today
	ErrCodeBadJSON            = 47001                             // the body is not the JSON expected
	ErrCodeBadSigMethod       = 87008                             // sig_method is not hmac_sha256
	ErrCodeInvalidSignature   = mpauthx.ErrCodeSessionKeyInvalid  // the signature is not by the user's current session key
)

// WeChat's access token rules, as the Server applies them.
const (
	// AccessTokenLifetime is how long an access token lives.
	AccessTokenLifetime = 7200 * time.Second
	// AccessTokenRenewWindow is the end of a token's life in which
	// stable_token, in normal mode, hands out the next token; the old one
	// stays valid until it ends.
	AccessTokenRenewWindow = 5 * time.Minute
	// ForceRefreshSpacing and ForceRefreshDailyLimit bound stable_token's
	// force_refresh: a forced refresh sooner than ForceRefreshSpacing after
	// the last one gets ErrCodeRateLimited, the one after
	// ForceRefreshDailyLimit in a day (Beijing time) ErrCodeDailyQuota.
	ForceRefreshSpacing    = 30 * time.Second
	ForceRefreshDailyLimit = 20
	// PhoneCodeLifetime is how long a phone code can be exchanged.
	PhoneCodeLifetime = 5 * time.Minute
)

// beijing is WeChat's time zone, in which its daily quotas reset.
var beijing = time.FixedZone("UTC+8", 8*60*60)

// phoneState is what the server knows about a phone code.
type phoneState struct {
	openID string
	issued time.Time // on the server's clock
	used   bool
}

// clock is the server's time: the real time plus what Advance added.
// s.mu must be held.
func (s *Server) clock() time.Time { return time.Now().Add(s.skew) }

// Advance moves the server's clock forward by d, so that a test need not
// wait: access tokens age (and end) by d, the 30 s spacing of forced
// refreshes and the day of their count move on, and phone codes age. It
// does not touch the client's clock or Redis's.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skew += d
}

// AccessTokenRequests returns the number of stable_token requests
// received so far, including those answered with an error or a fault.
func (s *Server) AccessTokenRequests() int {
	return int(s.tokenRequests.Load())
}

// ForcedRefreshes returns the number of stable_token requests with
// force_refresh that made a new token.
func (s *Server) ForcedRefreshes() int {
	return int(s.forced.Load())
}

// AccessToken returns the access token stable_token hands out now, or ""
// when it has handed out none or the current one has ended.
func (s *Server) AccessToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.tokens[s.current]; ok && s.clock().Before(exp) {
		return s.current
	}
	return ""
}

// ExpireAccessToken ends the current access token at once, as WeChat may
// do: APIs then answer it with errcode 40001, and stable_token hands out a
// new one.
func (s *Server) ExpireAccessToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, s.current)
	s.current = ""
}

// PhoneCode returns a fresh one-time phone code for the registered user, as
// a <button open-type="getPhoneNumber"> gives the mini program: it can be
// exchanged once, within PhoneCodeLifetime; later or unknown codes get
// errcode 40029. PhoneCode panics if the user is unknown or has no Phone.
func (s *Server) PhoneCode(openID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[openID]
	if !ok || u.Phone == "" {
		panic(fmt.Sprintf("mpauthxtest: PhoneCode: unknown user %q or user without Phone", openID))
	}
	for {
		c := "p+" + newCode()[2:]
		if _, dup := s.phoneCodes[c]; !dup {
			s.phoneCodes[c] = &phoneState{openID: openID, issued: s.clock()}
			return c
		}
	}
}

// stableTokenRequest is stable_token's JSON body.
type stableTokenRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh"`
}

// stableToken is stable_token's successful answer.
type stableToken struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// start begins the answer to a server API request: it sets the
// Content-Type, and answers (returning false) with the next fault queued
// for path, with errcode 43002 when post is set and r is not a POST, or
// with the errcode of r's access_token when token is set and it is not
// live.
func (s *Server) start(w http.ResponseWriter, r *http.Request, path string, post, token bool) bool {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	if s.fault(w, r, path) {
		return false
	}
	if post && r.Method != http.MethodPost {
		writeErr(w, ErrCodeRequirePOST)
		return false
	}
	if token {
		if code := s.checkToken(r.URL.Query().Get("access_token")); code != 0 {
			writeErr(w, code)
			return false
		}
	}
	return true
}

// readJSON decodes r's JSON body into v, or answers errcode 47001 and
// returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, ErrCodeBadJSON)
		return false
	}
	return true
}

func (s *Server) handleStableToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	var req stableTokenRequest
	if !s.start(w, r, StableTokenPath, true, false) || !readJSON(w, r, &req) {
		return
	}
	if req.GrantType != "client_credential" {
		writeErr(w, ErrCodeInvalidGrantType)
		return
	}
	if _, code := s.credentials(req.AppID, req.Secret, platformWeChat, platformOA); code != 0 {
		writeErr(w, code)
		return
	}
	tok, code := s.stableToken(req.ForceRefresh)
	if code != 0 {
		writeErr(w, code)
		return
	}
	w.Write(mustJSON(tok))
}

// stableToken applies stable_token's rules and returns the token to hand
// out, or an error code.
func (s *Server) stableToken(force bool) (stableToken, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	for t, exp := range s.tokens { // forget ended tokens: they answer 40001 like unknown ones
		if now.After(exp.Add(time.Hour)) {
			delete(s.tokens, t)
		}
	}
	exp, live := s.tokens[s.current]
	live = live && now.Before(exp)
	switch {
	case force:
		if !s.lastForce.IsZero() && now.Sub(s.lastForce) < ForceRefreshSpacing {
			return stableToken{}, ErrCodeRateLimited
		}
		day := now.In(beijing).Format("20060102")
		if day != s.forceDay {
			s.forceDay, s.forceCount = day, 0
		}
		if s.forceCount >= ForceRefreshDailyLimit {
			return stableToken{}, ErrCodeDailyQuota
		}
		s.forceCount++
		s.lastForce = now
		s.forced.Add(1)
		delete(s.tokens, s.current) // the old one ends at once
	case live && exp.Sub(now) > AccessTokenRenewWindow:
		return stableToken{AccessToken: s.current, ExpiresIn: int64(exp.Sub(now) / time.Second)}, 0
	}
	// A new token; in the renewal window the old one lives on until it ends.
	t := newAccessToken()
	s.current = t
	s.tokens[t] = now.Add(AccessTokenLifetime)
	return stableToken{AccessToken: t, ExpiresIn: int64(AccessTokenLifetime / time.Second)}, 0
}

// checkToken returns 0 when token is a live access token, else its
// errcode.
func (s *Server) checkToken(token string) int {
	if token == "" {
		return ErrCodeMissingAccessToken
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	switch {
	case !ok:
		return ErrCodeInvalidAccessToken
	case !s.clock().Before(exp):
		return ErrCodeAccessTokenExpired
	}
	return 0
}

// phoneRequest is getuserphonenumber's JSON body.
type phoneRequest struct {
	Code   string `json:"code"`
	OpenID string `json:"openid"`
}

// phoneInfo is getuserphonenumber's successful answer's phone_info.
type phoneInfo struct {
	PhoneNumber     string    `json:"phoneNumber"`
	PurePhoneNumber string    `json:"purePhoneNumber"`
	CountryCode     string    `json:"countryCode"`
	Watermark       watermark `json:"watermark"`
}

// phoneReply is getuserphonenumber's successful answer.
type phoneReply struct {
	ErrCode   int       `json:"errcode"`
	ErrMsg    string    `json:"errmsg"`
	PhoneInfo phoneInfo `json:"phone_info"`
}

func (s *Server) handlePhoneNumber(w http.ResponseWriter, r *http.Request) {
	var req phoneRequest
	if !s.start(w, r, PhoneNumberPath, true, true) || !readJSON(w, r, &req) {
		return
	}
	if req.Code == "" {
		writeErr(w, ErrCodeMissingCode)
		return
	}
	info, code := s.exchangePhone(req.Code, req.OpenID)
	if code != 0 {
		writeErr(w, code)
		return
	}
	w.Write(mustJSON(phoneReply{ErrMsg: "ok", PhoneInfo: info}))
}

// exchangePhone uses up a phone code and returns the phone number, or an
// error code.
func (s *Server) exchangePhone(code, openID string) (phoneInfo, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	p, ok := s.phoneCodes[code]
	if !ok || p.used || now.Sub(p.issued) > PhoneCodeLifetime {
		return phoneInfo{}, ErrCodeInvalidCode
	}
	if openID != "" && openID != p.openID {
		return phoneInfo{}, ErrCodeInvalidOpenID
	}
	p.used = true
	u := s.users[p.openID]
	cc := u.CountryCode
	if cc == "" {
		cc = "86"
	}
	full := u.Phone
	if cc != "86" {
		full = "+" + cc + u.Phone
	}
	return phoneInfo{PhoneNumber: full, PurePhoneNumber: u.Phone, CountryCode: cc,
		Watermark: watermark{Timestamp: now.Unix(), AppID: s.appOf(u).AppID}}, 0
}

func (s *Server) handleCheckSession(w http.ResponseWriter, r *http.Request) {
	if !s.start(w, r, CheckSessionPath, false, true) {
		return
	}
	q := r.URL.Query()
	if q.Get("sig_method") != "hmac_sha256" {
		writeErr(w, ErrCodeBadSigMethod)
		return
	}
	u, ok := s.User(q.Get("openid"))
	if !ok {
		writeErr(w, ErrCodeInvalidOpenID)
		return
	}
	mac := hmac.New(sha256.New, []byte(u.SessionKey))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(q.Get("signature")), []byte(want)) {
		writeErr(w, ErrCodeInvalidSignature)
		return
	}
	w.Write(mustJSON(apiError{ErrCode: 0, ErrMsg: "ok"}))
}

// writeErr answers with errcode code and a realistic errmsg.
func writeErr(w http.ResponseWriter, code int) {
	w.Write(mustJSON(apiError{ErrCode: code, ErrMsg: defaultErrMsg(code)}))
}
