// Package mpauthxtest provides a fake WeChat server for testing code that
// logs WeChat mini-program users in, in the style of net/http/httptest:
// code2session, and the server APIs of the phone-number login
// (stable_token, getuserphonenumber, checksession).
//
// A Server answers GET /sns/jscode2session like WeChat does: with
// Content-Type text/plain and a JSON body holding either
// {"openid","session_key","unionid"} or {"errcode","errmsg"}. Tests
// register users with AddUser, hand out single-use login codes with Code,
// and produce the encryptedData/iv pair a mini-program would send with
// UserInfo or EncryptFor. FailNext queues faults (HTTP errors, WeChat
// error codes, malformed bodies, delays) for the next requests, and
// FailNextAt does so for any endpoint.
//
// The server APIs follow WeChat's rules: POST StableTokenPath hands out
// the app's access token (the current one in normal mode, a new one in its
// last 5 minutes; force_refresh makes a new one and ends the old at once,
// at most once per 30 s and 20 times a day), and PhoneNumberPath and
// CheckSessionPath answer errcode 40001 for a token that is not live. A
// user's Phone and CountryCode are what getuserphonenumber returns for a
// code from PhoneCode (single use, valid 5 minutes); checksession accepts
// the signature of the user's current SessionKey only (87009 otherwise).
// ExpireAccessToken ends the current token as WeChat may,
// AccessTokenRequests counts stable_token calls, and Advance moves the
// server's clock so that a test need not wait for lifetimes and limits.
//
// A test of a login handler, here loginHandler(c), which answers
// POST {"code": "..."} with mpauthx.Result as JSON (see Example_loginHandler
// for one), with miniredis standing in for Redis:
//
//	func TestLogin(t *testing.T) {
//		wx := mpauthxtest.NewServer("wx-test-app", "test-secret")
//		defer wx.Close()
//		rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
//		defer rdb.Close()
//		db, err := mpauthx.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer db.Close()
//		c, err := mpauthx.New(mpauthx.Config{AppID: wx.AppID, AppSecret: wx.AppSecret,
//			APIBase: wx.URL, Sku: "test", Redis: rdb, DB: db})
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer c.Close()
//		h := loginHandler(c)
//
//		wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
//		code := wx.Code("o-alice")
//		tests := []struct { // in order: "reused" reuses the code of "ok"
//			name     string
//			code     string
//			fault    *mpauthxtest.Fault // the next code2session's answer
//			wantHTTP int
//			wantCode mpauthx.StatusCode
//		}{
//			{"ok", code, nil, 200, mpauthx.StatusSuccess},
//			{"reused", code, nil, 401, mpauthx.StatusSessionKeyRequestError},
//			{"unknown", "nope", nil, 401, mpauthx.StatusSessionKeyRequestError},
//			{"missing", "", nil, 400, mpauthx.StatusRequiredParamsMissing},
//			{"rate limited", wx.Code("o-alice"), &mpauthxtest.Fault{ErrCode: 45011}, 502, mpauthx.StatusSessionKeyRequestError},
//			{"WeChat down", wx.Code("o-alice"), &mpauthxtest.Fault{Status: 500}, 502, mpauthx.StatusSessionKeyRequestError},
//		}
//		for _, tt := range tests {
//			t.Run(tt.name, func(t *testing.T) {
//				if tt.fault != nil {
//					wx.FailNext(1, *tt.fault)
//				}
//				body := strings.NewReader(`{"code":"` + tt.code + `"}`)
//				rec := httptest.NewRecorder()
//				h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", body))
//				var res mpauthx.Result
//				if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
//					t.Fatalf("reply %q: %v", rec.Body, err)
//				}
//				if rec.Code != tt.wantHTTP || res.StatusCode != tt.wantCode || (res.Response != "") != (tt.wantCode == mpauthx.StatusSuccess) {
//					t.Errorf("POST /login = %d %+v, want %d with status_code %d", rec.Code, res, tt.wantHTTP, tt.wantCode)
//				}
//			})
//		}
//	}
//
// A phone-number login handler, here phoneLoginHandler(c), answering POST
// {"code", "phoneCode"} (see mpauthx's Example_phoneLoginHandler), tested
// in the same setting:
//
//	wx.AddUser(mpauthxtest.User{OpenID: "o-bob", Phone: "13800138000"})
//	used := wx.PhoneCode("o-bob")
//	tests := []struct { // in order: "reused" reuses the phone code of "ok"
//		name      string
//		phoneCode string
//		fault     *mpauthxtest.Fault // the next getuserphonenumber's answer
//		wantHTTP  int
//		wantCode  mpauthx.StatusCode
//	}{
//		{"ok", used, nil, 200, mpauthx.StatusSuccess},
//		{"reused", used, nil, 401, mpauthx.StatusPhoneNumberError},
//		{"missing", "", nil, 400, mpauthx.StatusRequiredParamsMissing},
//		{"token ended", wx.PhoneCode("o-bob"), &mpauthxtest.Fault{ErrCode: 40001}, 200, mpauthx.StatusSuccess}, // renewed, retried
//		{"WeChat down", wx.PhoneCode("o-bob"), &mpauthxtest.Fault{Status: 500}, 502, mpauthx.StatusPhoneNumberError},
//	}
//	for _, tt := range tests {
//		t.Run(tt.name, func(t *testing.T) {
//			if tt.fault != nil {
//				wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, *tt.fault)
//			}
//			body := strings.NewReader(`{"code":"` + wx.Code("o-bob") + `","phoneCode":"` + tt.phoneCode + `"}`)
//			rec := httptest.NewRecorder()
//			phoneLoginHandler(c).ServeHTTP(rec, httptest.NewRequest("POST", "/login/phone", body))
//			var res mpauthx.Result
//			json.Unmarshal(rec.Body.Bytes(), &res)
//			if rec.Code != tt.wantHTTP || res.StatusCode != tt.wantCode {
//				t.Errorf("POST /login/phone = %d %+v, want %d with status_code %d", rec.Code, res, tt.wantHTTP, tt.wantCode)
//			}
//		})
//	}
//
// One Server fakes every platform mpauthx serves, for as many apps as a
// test adds with AddApp: the OAuth login of WeChat official accounts and
// websites (OAuthAccessTokenPath, and the browser's pages, which
// AuthCallback stands in for), QQ's code2session (Code2SessionPath, like
// WeChat's) and Douyin's code2session and phone numbers
// (DouyinCode2SessionPath, DouyinPhoneNumberPath, the data encrypted to
// the app's PublicKey) and Alipay's gateway (AlipayGatewayPath, replies
// signed by the fake Alipay; AlipayPhoneResponse). A User belongs to one app (User.AppID; "" is the
// first app, NewServer's WeChat mini program), and a code works for its
// user's app only. Point every Client's APIBase at the Server's URL.
//
// Codes and access tokens deliberately contain characters that must be
// escaped in a URL query ('+' and '='), so a client that builds the query
// string by hand without escaping fails every time rather than
// occasionally.
package mpauthxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
)

// Code2SessionPath is the path the Server answers code2session on,
// relative to Server.URL.
const Code2SessionPath = "/sns/jscode2session"

// Error codes the Server answers code2session with on its own. Any other
// code can be sent with a Fault. Those that mpauthx also names are the
// same constants (mpauthx.ErrCodeInvalidCode is ErrCodeInvalidCode), so a
// test may use either package's; the others are mpauthxtest's alone.
const (
	ErrCodeSystemError      = mpauthx.ErrCodeBusy          // "system error"; mpauthx retries it
	ErrCodeInvalidGrantType = 40002                        // grant_type is not "authorization_code"
	ErrCodeInvalidAppID     = mpauthx.ErrCodeInvalidAppID  // appid is not Server.AppID
	ErrCodeInvalidCode      = mpauthx.ErrCodeInvalidCode   // js_code is unknown
	ErrCodeInvalidSecret    = mpauthx.ErrCodeInvalidSecret // secret is not Server.AppSecret
	ErrCodeCodeUsed         = mpauthx.ErrCodeCodeUsed      // js_code was already exchanged
	ErrCodeMissingCode      = 41008                        // js_code is missing
	ErrCodeRateLimited      = mpauthx.ErrCodeRateLimited   // "api minute-quota reach limit"
)

// errMsgs holds realistic messages for the known error codes. The server
// appends ", rid: ..." like WeChat does.
var errMsgs = map[int]string{
	ErrCodeSystemError:        "system error",
	ErrCodeInvalidGrantType:   "invalid grant_type",
	ErrCodeInvalidAppID:       "invalid appid",
	ErrCodeInvalidCode:        "invalid code",
	ErrCodeInvalidSecret:      "invalid appsecret",
	ErrCodeCodeUsed:           "code been used",
	ErrCodeMissingCode:        "missing code",
	ErrCodeRateLimited:        "api minute-quota reach limit mustslower retry next minute",
	41002:                     "appid missing",
	ErrCodeInvalidAccessToken: "invalid credential, access_token is invalid or not latest",
	ErrCodeInvalidOpenID:      "invalid openid",
	ErrCodeAccessTokenExpired: "access_token expired",
	ErrCodeMissingAccessToken: "access_token missing",
	ErrCodeRequirePOST:        "require POST method",
	ErrCodeDailyQuota:         "reach max api daily quota limit",
	ErrCodeBadJSON:            "data format error",
	ErrCodeBadSigMethod:       "invalid sig_method",
	ErrCodeInvalidSignature:   "invalid signature",
	41004:                     "appsecret missing",
}

// Server is a fake WeChat: code2session, stable_token,
// getuserphonenumber and checksession. Its methods are safe for
// concurrent use. Create one with NewServer and Close it when done.
type Server struct {
	URL       string // base URL, e.g. http://127.0.0.1:PORT; use as mpauthx Config.APIBase
	AppID     string // the only appid the server accepts
	AppSecret string // the only secret the server accepts

	srv       *httptest.Server
	closed    chan struct{} // closed by Close; ends pending fault delays
	closeOnce sync.Once
	requests  atomic.Int64

	tokenRequests       atomic.Int64 // stable_token requests
	forced              atomic.Int64 // forced refreshes made
	clientTokenRequests atomic.Int64 // Douyin's client_token requests

	mu       sync.Mutex
	apps     map[string]*appState  // by AppID
	appOrder []string              // AppIDs in the order added; the first is NewServer's
	keysUsed int                   // RSA keys handed out by rsaKey
	users    map[string]User       // by OpenID, unique across apps
	codes    map[string]*codeState // by code
	faults   map[string][]Fault    // queue per path, front first
	skew     time.Duration         // Advance's total: the server's clock runs ahead by it

	tokens     map[string]time.Time   // access token -> expiry; an ended token is deleted
	current    string                 // the access token stable_token hands out
	lastForce  time.Time              // the last forced refresh
	forceDay   string                 // the day (Beijing time) forceCount counts
	forceCount int                    // forced refreshes on forceDay
	phoneCodes map[string]*phoneState // by phone code

	clientTokens map[string]*clientTokens // Douyin's, by client_key (douyin_token.go)
	api          apiRoutes                // HandleAPI's handlers (api.go)
}

// codeState is what the server knows about a login code.
type codeState struct {
	openID string
	used   bool
	scope  string // the OAuth scope it was handed out for; "" for Code's
}

// User is a registered user of one app.
type User struct {
	// AppID is the app the user logs in through (see AddApp); "" means
	// the Server's first app, the WeChat mini program of NewServer.
	AppID string
	// OpenID identifies the user within the app. It is required, and
	// unique on the Server across apps (a person has another openid in
	// each app, and shares a UnionID between the apps of one platform
	// family): AddUser panics when it is empty, as that is a mistake in
	// the test.
	OpenID string
	// UnionID is optional. When set, code2session returns it as
	// "unionid" (unless OmitUnionIDInSession is true) and UserInfo
	// includes it as "unionId".
	UnionID string
	// SnapshotUser makes the user of an official account a visitor of a
	// snapshot page: sns/oauth2/access_token answers is_snapshotuser 1.
	SnapshotUser bool
	// OmitUnionIDInSession leaves the unionid out of code2session's
	// reply, so that it is only found in the encrypted data, as happens
	// for some users.
	OmitUnionIDInSession bool
	// SessionKey is the base64 (standard encoding) of the user's 16-byte
	// AES key. AddUser fills in a random one when it is empty. Any other
	// value is handed out by code2session as is, so a test can make
	// WeChat return a malformed key; UserInfo and EncryptFor, however,
	// panic unless it is base64 of 16 bytes.
	SessionKey string

	// Profile fields, as found in the encrypted user info.
	NickName, City, Province, Country, Language, AvatarURL string
	// Gender is 0 (unknown), 1 (male) or 2 (female) in WeChat's data.
	Gender int

	// Phone is the user's phone number without country code (WeChat's
	// purePhoneNumber), such as "13800138000"; PhoneCode needs it.
	Phone string
	// CountryCode is the phone number's country calling code without '+';
	// "" means "86". getuserphonenumber's phoneNumber is Phone for "86",
	// else "+" CountryCode Phone.
	CountryCode string
}

// Fault is an answer the server gives instead of the normal one. Each
// queued Fault is used by exactly one request to the endpoint it was
// queued for (FailNext: code2session; FailNextAt: any), whatever its
// parameters. A request answered with a fault does not use up its code
// (unless only Delay is set, in which case the normal answer follows).
//
// The body is chosen as follows: Body when it is non-nil; otherwise
// {"errcode":ErrCode,"errmsg":...} when ErrCode is non-zero; otherwise,
// when Status is non-zero, the status text (e.g. "Internal Server
// Error"), which is not JSON; otherwise the normal answer.
type Fault struct {
	// Delay is how long to wait before answering. The wait ends early,
	// with no answer written, when the request's context ends (e.g. the
	// client gives up) or the Server is closed. With nothing else set the
	// normal answer follows the delay.
	Delay time.Duration
	// Status is the HTTP status code; 0 means 200.
	Status int
	// ErrCode makes the body {"errcode":ErrCode,"errmsg":ErrMsg}.
	ErrCode int
	// ErrMsg is the errmsg sent with ErrCode. When empty, a realistic
	// message for the code is used (followed by ", rid: ..." like WeChat).
	ErrMsg string
	// Body, when non-nil, is sent as the body exactly; an empty non-nil
	// slice sends an empty body. It overrides ErrCode.
	Body []byte
}

// NewServer starts and returns a new Server whose first app is the WeChat
// mini program with the given appid and secret; AddApp adds more. The
// caller should call Close when finished, to shut it down.
func NewServer(appID, appSecret string) *Server {
	s := &Server{
		AppID:      appID,
		AppSecret:  appSecret,
		apps:       map[string]*appState{appID: {App: App{Platform: platformWeChat, AppID: appID, AppSecret: appSecret}}},
		appOrder:   []string{appID},
		closed:     make(chan struct{}),
		users:      make(map[string]User),
		codes:      make(map[string]*codeState),
		faults:     make(map[string][]Fault),
		tokens:     make(map[string]time.Time),
		phoneCodes: make(map[string]*phoneState),
	}
	mux := http.NewServeMux()
	for path, e := range endpoints {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { e.handle(s, w, r) })
	}
	mux.HandleFunc("/", s.serveAPI) // HandleAPI's paths (api.go), else 404
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close shuts down the server, ending any pending fault delays, and
// blocks until all outstanding requests have completed. It is safe to
// call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.srv.Close()
	})
}

// AddUser registers u, replacing any user with the same OpenID, and
// returns it with SessionKey filled in. Codes already handed out for the
// OpenID stay valid. It panics if u.OpenID is empty or u.AppID names no
// app added.
func (s *Server) AddUser(u User) User {
	if u.OpenID == "" {
		panic("mpauthxtest: AddUser: User.OpenID is empty")
	}
	if u.SessionKey == "" {
		u.SessionKey = newSessionKey()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[u.AppID]; u.AppID != "" && !ok {
		panic(fmt.Sprintf("mpauthxtest: AddUser: unknown app %q (see AddApp)", u.AppID))
	}
	s.users[u.OpenID] = u
	return u
}

// User returns the registered user with the given OpenID, as it is now
// (for example after SetSessionKey), and whether there is one.
func (s *Server) User(openID string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[openID]
	return u, ok
}

// user returns the registered user and its app, or panics, naming the
// caller.
func (s *Server) user(caller, openID string) (User, App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[openID]
	if !ok {
		panic(fmt.Sprintf("mpauthxtest: %s: unknown user %q", caller, openID))
	}
	return u, s.appOf(u).App
}

// Code returns a fresh login code for the registered user, as wx.login
// would give the mini-program (or tt.login, my.getAuthCode, or the
// callback of an official account's or website's OAuth login, for users
// of such apps). The code can be exchanged successfully once, by the
// user's app only; later exchanges get errcode 40163 (or the platform's
// equivalent). Codes are random printable
// ASCII that never contains '|' but always contains characters that need
// escaping in a URL query. Code panics if the user is unknown.
func (s *Server) Code(openID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[openID]; !ok {
		panic(fmt.Sprintf("mpauthxtest: Code: unknown user %q", openID))
	}
	for {
		c := newCode()
		if _, dup := s.codes[c]; !dup {
			s.codes[c] = &codeState{openID: openID}
			return c
		}
	}
}

// userInfo is the plaintext of WeChat's encrypted user data.
type userInfo struct {
	OpenID    string    `json:"openId"`
	NickName  string    `json:"nickName"`
	Gender    int       `json:"gender"`
	Language  string    `json:"language"`
	City      string    `json:"city"`
	Province  string    `json:"province"`
	Country   string    `json:"country"`
	AvatarURL string    `json:"avatarUrl"`
	UnionID   string    `json:"unionId,omitempty"`
	Watermark watermark `json:"watermark"`
}

type watermark struct {
	Timestamp int64  `json:"timestamp"`
	AppID     string `json:"appid"`
}

// UserInfo returns the user's profile as a mini-program receives it from
// wx.getUserInfo (or tt.getUserInfo, qq.getUserInfo): JSON with openId,
// the profile fields, unionId (when the user has one) and a watermark
// holding the AppID of the user's app and the current Unix
// time, encrypted with AES-128-CBC under the user's current SessionKey
// and a fresh random iv, with PKCS#7 padding. Both results are base64
// (standard encoding). It panics if the user is unknown or the user's
// SessionKey is not base64 of 16 bytes.
func (s *Server) UserInfo(openID string) (encryptedData, iv string) {
	u, app := s.user("UserInfo", openID)
	plain, err := json.Marshal(userInfo{
		OpenID:    u.OpenID,
		NickName:  u.NickName,
		Gender:    u.Gender,
		Language:  u.Language,
		City:      u.City,
		Province:  u.Province,
		Country:   u.Country,
		AvatarURL: u.AvatarURL,
		UnionID:   u.UnionID,
		Watermark: watermark{Timestamp: time.Now().Unix(), AppID: app.AppID},
	})
	if err != nil {
		panic("mpauthxtest: UserInfo: " + err.Error())
	}
	return encryptCBC(u.SessionKey, plain)
}

// EncryptFor encrypts arbitrary plaintext, PKCS#7 padded, with
// AES-128-CBC under the user's current SessionKey and a fresh random iv,
// and returns both base64 (standard encoding). Use it to test how bad
// payloads (invalid JSON, a wrong watermark, another openId) are
// handled. It panics if the user is unknown or the user's SessionKey is
// not base64 of 16 bytes.
func (s *Server) EncryptFor(openID string, plaintext []byte) (encryptedData, iv string) {
	u, _ := s.user("EncryptFor", openID)
	return encryptCBC(u.SessionKey, plaintext)
}

// FailNext makes the next n code2session requests get f instead of the
// normal answer: FailNextAt(Code2SessionPath, n, f).
func (s *Server) FailNext(n int, f Fault) {
	s.FailNextAt(Code2SessionPath, n, f)
}

// FailNextAt makes the next n requests to path (one of the Server's
// *Path constants, such as Code2SessionPath, StableTokenPath or
// DouyinCode2SessionPath) get f instead of the normal answer, whichever
// app they are for; on the endpoints of other platforms, f.ErrCode is
// written in the platform's shape (Douyin's err_no, ...). Calls append
// to the path's queue: after FailNextAt(p, 1, a) and FailNextAt(p, 2, b)
// the next three requests to p get a, b and b. It does nothing when
// n <= 0 and panics for another path, as that is a mistake in the test.
func (s *Server) FailNextAt(path string, n int, f Fault) {
	if _, ok := endpoints[path]; !ok {
		panic(fmt.Sprintf("mpauthxtest: FailNextAt: unknown path %q", path))
	}
	if n <= 0 {
		return
	}
	if f.Body != nil {
		f.Body = append([]byte{}, f.Body...) // the caller may reuse its slice
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[path] = append(s.faults[path], f)
	}
}

// Requests returns the number of code2session requests received so far,
// including those answered with an error or a fault. Requests to other
// paths are not counted.
func (s *Server) Requests() int {
	return int(s.requests.Load())
}

// SetSessionKey changes the session key of a registered user, simulating
// WeChat rotating it: later code2session answers, UserInfo and
// EncryptFor use the new key. An empty sessionKey means a fresh random
// one (see User to learn it). It panics if the user is unknown.
func (s *Server) SetSessionKey(openID, sessionKey string) {
	if sessionKey == "" {
		sessionKey = newSessionKey()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[openID]
	if !ok {
		panic(fmt.Sprintf("mpauthxtest: SetSessionKey: unknown user %q", openID))
	}
	u.SessionKey = sessionKey
	s.users[openID] = u
}

// nextFault pops the front of path's fault queue.
func (s *Server) nextFault(path string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[path]
	if len(q) == 0 {
		return Fault{}, false
	}
	f := q[0]
	q[0] = Fault{}
	s.faults[path] = q[1:]
	return f, true
}

// fault answers r with the next fault queued for path, if any, and
// reports whether it did, so that the caller must not answer too. A
// fault of only a Delay waits and lets the caller answer.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, path string) bool {
	f, ok := s.nextFault(path)
	if !ok {
		return false
	}
	if f.Delay > 0 && !s.wait(r.Context(), f.Delay) {
		return true
	}
	if f.Body == nil && f.ErrCode == 0 && f.Status == 0 {
		return false
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	var body []byte
	switch {
	case f.Body != nil:
		body = f.Body
	case f.ErrCode != 0:
		if eb := endpoints[path].errBody; eb != nil {
			body = eb(f.ErrCode, f.ErrMsg)
			break
		}
		msg := f.ErrMsg
		if msg == "" {
			msg = defaultErrMsg(f.ErrCode)
		}
		body = mustJSON(apiError{ErrCode: f.ErrCode, ErrMsg: msg})
	default:
		body = []byte(http.StatusText(status))
	}
	w.WriteHeader(status)
	w.Write(body)
	return true
}

// session is code2session's successful answer.
type session struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid,omitempty"`
}

// apiError is code2session's error answer.
type apiError struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

func init() {
	addEndpoint(Code2SessionPath, (*Server).handleCode2Session, nil)
	addEndpoint(StableTokenPath, (*Server).handleStableToken, nil)
	addEndpoint(PhoneNumberPath, (*Server).handlePhoneNumber, nil)
	addEndpoint(CheckSessionPath, (*Server).handleCheckSession, nil)
}

// handleCode2Session answers code2session for WeChat and QQ mini
// programs, whose APIs are the same.
func (s *Server) handleCode2Session(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header().Set("Content-Type", "text/plain")

	if s.fault(w, r, Code2SessionPath) {
		return
	}

	q := r.URL.Query()
	sess, code := s.exchange(q.Get("appid"), q.Get("secret"), q.Get("grant_type"), q.Get("js_code"))
	if code != 0 {
		w.Write(mustJSON(apiError{ErrCode: code, ErrMsg: defaultErrMsg(code)}))
		return
	}
	w.Write(mustJSON(sess))
}

// exchange checks a code2session request of a WeChat or QQ mini program
// and, when it is valid, uses up the code. It returns the session or a
// non-zero WeChat error code.
func (s *Server) exchange(appID, secret, grantType, jsCode string) (session, int) {
	if _, code := s.credentials(appID, secret, platformWeChat, platformQQ); code != 0 {
		return session{}, code
	}
	if grantType != "authorization_code" {
		return session{}, ErrCodeInvalidGrantType
	}
	u, code := s.useCode(appID, jsCode)
	if code != 0 {
		return session{}, code
	}
	sess := session{OpenID: u.OpenID, SessionKey: u.SessionKey}
	if !u.OmitUnionIDInSession {
		sess.UnionID = u.UnionID
	}
	return sess, 0
}

// wait sleeps for d and reports whether it did so completely, rather
// than stopping early because ctx ended or the server was closed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

// defaultErrMsg returns a WeChat-like errmsg for code.
func defaultErrMsg(code int) string {
	msg, ok := errMsgs[code]
	if !ok {
		msg = "system error"
	}
	return msg + ", rid: " + newRID()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	return b
}
