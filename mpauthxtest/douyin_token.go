package mpauthxtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
)

// ClientTokenPath is the path the Server answers Douyin's client_token
// on, relative to Server.URL: POST JSON {"client_key", "client_secret",
// "grant_type": "client_credential"}, answered like open.douyin.com does.
const ClientTokenPath = "/oauth/client_token/"

func init() {
	addEndpoint(ClientTokenPath, (*Server).handleClientToken, clientTokenErrBody)
}

// Douyin's error codes of client_token, answered by the Server on its own
// in data.error_code.
const (
	DouyinErrCodeBadParams       = 10002 // a parameter is missing or wrong (grant_type, the JSON body)
	DouyinErrCodeNoClientKey     = 10003 // client_key is not a known app
	DouyinErrCodeBadClientSecret = 10013 // client_secret is not the app's
	// DouyinErrCodeInvalidToken is the err_no of an API that was given a
	// client_token that is not (or no longer) valid, as third-party SDKs
	// report it; Douyin's documentation we found does not confirm it.
	DouyinErrCodeInvalidToken = 28001003
)

// Douyin's client_token rules, as the Server applies them.
const (
	// ClientTokenLifetime is how long a client_token lives.
	ClientTokenLifetime = 7200 * time.Second
	// ClientTokenGrace is how long a client_token stays valid after the
	// next one is fetched; Douyin keeps the latest two at most.
	ClientTokenGrace = 5 * time.Minute
)

// douyinDescriptions are Douyin's descriptions of its error codes.
var douyinDescriptions = map[int]string{
	DouyinErrCodeBadParams:       "参数错误",
	DouyinErrCodeNoClientKey:     "client_key 不存在",
	DouyinErrCodeBadClientSecret: "client_key 或者 client_secret 报错",
}

// clientTokens are the live client_tokens of one Douyin app, oldest
// first; s.mu guards them.
type clientTokens struct {
	order []string             // at most two, the newest last
	ends  map[string]time.Time // token -> the end of its life, on the server's clock
}

// douyinSecret returns the client_secret of the Douyin app clientKey, and
// whether the Server knows it. Every check of an app goes through it.
func (s *Server) douyinSecret(clientKey string) (string, bool) {
	a, ok := s.app(clientKey)
	if clientKey == "" || !ok {
		return "", false
	}
	return a.AppSecret, true
}

// clientTokensOf returns clientKey's client_tokens, ended ones removed.
// s.mu must be held.
func (s *Server) clientTokensOf(clientKey string) *clientTokens {
	if s.clientTokens == nil {
		s.clientTokens = make(map[string]*clientTokens)
	}
	ct := s.clientTokens[clientKey]
	if ct == nil {
		ct = &clientTokens{ends: make(map[string]time.Time)}
		s.clientTokens[clientKey] = ct
	}
	now := s.clock()
	live := ct.order[:0]
	for _, t := range ct.order {
		if now.Before(ct.ends[t]) {
			live = append(live, t)
		} else {
			delete(ct.ends, t)
		}
	}
	ct.order = live
	return ct
}

// ClientTokenRequests returns the number of client_token requests
// received so far, including those answered with an error or a fault.
func (s *Server) ClientTokenRequests() int {
	return int(s.clientTokenRequests.Load())
}

// ClientToken returns the client_token client_token handed out last, or
// "" when it has handed out none or that one has ended.
func (s *Server) ClientToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ct := s.clientTokensOf(s.AppID)
	if len(ct.order) == 0 {
		return ""
	}
	return ct.order[len(ct.order)-1]
}

// ClientTokenValid reports whether token is a live client_token of one
// of the Server's apps: handed out less than ClientTokenLifetime ago, and
// not ended by a later one (ClientTokenGrace after it, or at once when two
// later ones exist) or by ExpireClientToken. The fake of Douyin's phone
// API answers err_no DouyinErrCodeInvalidToken when this is false.
func (s *Server) ClientTokenValid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.clientTokens {
		if _, ok := s.clientTokensOf(key).ends[token]; ok {
			return true
		}
	}
	return false
}

// ExpireClientToken ends every live client_token of every app at once,
// as Douyin may: the next client_token request makes a new one.
func (s *Server) ExpireClientToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.clientTokens {
		ct := s.clientTokensOf(key)
		ct.order = ct.order[:0]
		clear(ct.ends)
	}
}

// clientTokenRequest is client_token's JSON body.
type clientTokenRequest struct {
	ClientKey    string `json:"client_key"`
	ClientSecret string `json:"client_secret"`
	GrantType    string `json:"grant_type"`
}

// clientTokenData is client_token's reply's data.
type clientTokenData struct {
	AccessToken string `json:"access_token"`
	Description string `json:"description"`
	ErrorCode   int    `json:"error_code"`
	ExpiresIn   int64  `json:"expires_in"`
}

// clientTokenReply is client_token's reply.
type clientTokenReply struct {
	Data    clientTokenData `json:"data"`
	Message string          `json:"message"`
}

func (s *Server) handleClientToken(w http.ResponseWriter, r *http.Request) {
	s.clientTokenRequests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	if s.fault(w, r, ClientTokenPath) {
		return
	}
	var req clientTokenRequest
	if r.Method != http.MethodPost || !readDouyinJSON(w, r, &req) {
		writeClientTokenErr(w, DouyinErrCodeBadParams)
		return
	}
	secret, ok := s.douyinSecret(req.ClientKey)
	switch {
	case req.GrantType != "client_credential":
		writeClientTokenErr(w, DouyinErrCodeBadParams)
		return
	case !ok:
		writeClientTokenErr(w, DouyinErrCodeNoClientKey)
		return
	case req.ClientSecret != secret:
		writeClientTokenErr(w, DouyinErrCodeBadClientSecret)
		return
	}
	w.Write(mustJSON(clientTokenReply{Data: clientTokenData{
		AccessToken: s.newClientToken(req.ClientKey),
		ExpiresIn:   int64(ClientTokenLifetime / time.Second),
	}, Message: "success"}))
}

// newClientToken makes a new client_token of clientKey: the previous one
// lives on for ClientTokenGrace at most, and older ones end.
func (s *Server) newClientToken(clientKey string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ct := s.clientTokensOf(clientKey)
	now := s.clock()
	for len(ct.order) > 1 {
		delete(ct.ends, ct.order[0])
		ct.order = ct.order[1:]
	}
	for _, t := range ct.order {
		if end := now.Add(ClientTokenGrace); end.Before(ct.ends[t]) {
			ct.ends[t] = end
		}
	}
	t := "clt." + base64.RawURLEncoding.EncodeToString(randomBytes(30))
	ct.order = append(ct.order, t)
	ct.ends[t] = now.Add(ClientTokenLifetime)
	return t
}

// readDouyinJSON decodes r's JSON body into v and reports whether it
// could.
func readDouyinJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v) == nil
}

// writeClientTokenErr answers client_token's error code in Douyin's shape.
func writeClientTokenErr(w http.ResponseWriter, code int) {
	w.Write(clientTokenErrBody(code, ""))
}

// clientTokenErrBody writes a Fault's ErrCode as client_token does: as
// data.error_code and data.description.
func clientTokenErrBody(code int, desc string) []byte {
	if desc == "" {
		if desc = douyinDescriptions[code]; desc == "" {
			desc = "系统错误"
		}
	}
	return mustJSON(clientTokenReply{Data: clientTokenData{ErrorCode: code, Description: desc}, Message: "error"})
}
