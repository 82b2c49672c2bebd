package mpauthxtest

import (
	"net/http"
	"strings"
	"sync"
)

// apiRoutes are the handlers of HandleAPI, by path.
type apiRoutes struct {
	mu sync.RWMutex
	m  map[string]http.Handler
}

// HandleAPI makes the Server answer any other WeChat server API that
// takes the access token, for tests of mpauthx's Client.CallAPI or of
// your own calls with Client.AccessToken: requests to path (exactly; the
// query is free) whose access_token is not live get WeChat's errcode
// (41001 missing, 40001 unknown or ended by ExpireAccessToken or a
// forced refresh, 42001 expired), like the Server's own APIs; the others
// reach h, which answers as the real API would (an errcode too, if the
// test wants one). The reply's Content-Type is
// "application/json; encoding=utf-8" unless h sets another. A later
// HandleAPI of the same path replaces h; registering one of the Server's
// own paths panics, as that is a mistake in the test.
func (s *Server) HandleAPI(path string, h http.HandlerFunc) {
	switch {
	case !strings.HasPrefix(path, "/"):
		panic("mpauthxtest: HandleAPI: path " + path + " does not start with '/'")
	case path == Code2SessionPath, path == StableTokenPath, path == PhoneNumberPath, path == CheckSessionPath:
		panic("mpauthxtest: HandleAPI: " + path + " is answered by the Server itself")
	case h == nil:
		panic("mpauthxtest: HandleAPI: nil handler")
	}
	s.api.mu.Lock()
	defer s.api.mu.Unlock()
	if s.api.m == nil {
		s.api.m = make(map[string]http.Handler)
	}
	s.api.m[path] = h
}

// serveAPI answers a path the Server has no handler of its own for:
// HandleAPI's, else 404.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.api.mu.RLock()
	h, ok := s.api.m[r.URL.Path]
	s.api.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	if code := s.checkToken(r.URL.Query().Get("access_token")); code != 0 {
		writeErr(w, code)
		return
	}
	h.ServeHTTP(w, r)
}
