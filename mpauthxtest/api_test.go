package mpauthxtest_test

import (
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestHandleAPI: a path given to HandleAPI reaches its handler with a
// live access token only; other tokens get WeChat's errcodes, and paths
// nobody handles 404.
func TestHandleAPI(t *testing.T) {
	srv := newServer(t)
	calls := 0
	srv.HandleAPI("/wxa/msg_sec_check", func(w http.ResponseWriter, r *http.Request) {
		calls++
		b, _ := io.ReadAll(r.Body)
		w.Write([]byte(`{"errcode":0,"errmsg":"ok","echo":` + string(b) + `,"lang":"` + r.URL.Query().Get("lang") + `"}`))
	})
	tok := stable(t, srv, false).AccessToken
	tests := []struct {
		name    string
		token   string
		expire  bool
		errcode int
	}{
		{"live token", tok, false, 0},
		{"no token", "", false, mpauthxtest.ErrCodeMissingAccessToken},
		{"unknown token", "nope", false, mpauthxtest.ErrCodeInvalidAccessToken},
		{"token ended by ExpireAccessToken", tok, true, mpauthxtest.ErrCodeInvalidAccessToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.expire {
				srv.ExpireAccessToken()
			}
			before := calls
			r := do(t, srv, http.MethodPost, "/wxa/msg_sec_check", url.Values{"access_token": {tt.token}, "lang": {"zh_CN"}}, map[string]string{"content": "hi"})
			if r.ErrCode != tt.errcode || (calls > before) != (tt.errcode == 0) {
				t.Errorf("errcode %d (%s), handler called %d times; want errcode %d", r.ErrCode, r.ErrMsg, calls-before, tt.errcode)
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		tok := stable(t, srv, false).AccessToken
		srv.Advance(mpauthxtest.AccessTokenLifetime + time.Second)
		if r := do(t, srv, http.MethodGet, "/wxa/msg_sec_check", url.Values{"access_token": {tok}}, nil); r.ErrCode != mpauthxtest.ErrCodeAccessTokenExpired {
			t.Errorf("errcode %d, want 42001", r.ErrCode)
		}
	})
	t.Run("unhandled path", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/wxa/other?access_token=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	for _, path := range []string{mpauthxtest.Code2SessionPath, mpauthxtest.StableTokenPath, "relative"} {
		t.Run("refuses "+path, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			srv.HandleAPI(path, func(http.ResponseWriter, *http.Request) {})
		})
	}
}
