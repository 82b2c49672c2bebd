package mpauthxtest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// clientTokenReply is client_token's answer.
type clientTokenReply struct {
	Data struct {
		AccessToken string `json:"access_token"`
		Description string `json:"description"`
		ErrorCode   int    `json:"error_code"`
		ExpiresIn   int64  `json:"expires_in"`
	} `json:"data"`
	Message string `json:"message"`
}

// clientToken sends srv a client_token request with body (a JSON value,
// or the raw bytes of a []byte) by method and decodes the answer.
func clientToken(t *testing.T, srv *mpauthxtest.Server, method string, body any) (int, clientTokenReply) {
	t.Helper()
	b, ok := body.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, srv.URL+mpauthxtest.ClientTokenPath, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r clientTokenReply
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("client_token: %v", err)
		}
	}
	return resp.StatusCode, r
}

// goodClientToken asks srv for a client_token with the right key and
// secret and fails the test unless it gets one.
func goodClientToken(t *testing.T, srv *mpauthxtest.Server) string {
	t.Helper()
	_, r := clientToken(t, srv, http.MethodPost, map[string]string{"client_key": appID, "client_secret": secret, "grant_type": "client_credential"})
	if r.Data.ErrorCode != 0 || !strings.HasPrefix(r.Data.AccessToken, "clt.") || r.Data.ExpiresIn != 7200 || r.Message != "success" {
		t.Fatalf("client_token = %+v, want a clt. token for 7200 s", r)
	}
	return r.Data.AccessToken
}

func TestClientToken(t *testing.T) {
	srv := newServer(t)
	t1 := goodClientToken(t, srv)
	if srv.ClientToken() != t1 || !srv.ClientTokenValid(t1) || srv.ClientTokenRequests() != 1 {
		t.Fatalf("after one fetch: ClientToken = %q, valid %t, %d requests", srv.ClientToken(), srv.ClientTokenValid(t1), srv.ClientTokenRequests())
	}
	if srv.AccessTokenRequests() != 0 || srv.AccessToken() != "" {
		t.Error("client_token touched WeChat's stable token")
	}

	// Every fetch is a new token; the previous one lives 5 more minutes.
	t2 := goodClientToken(t, srv)
	if t2 == t1 || srv.ClientToken() != t2 || !srv.ClientTokenValid(t1) || !srv.ClientTokenValid(t2) {
		t.Fatalf("second fetch: %q (first %q); valid %t, %t", t2, t1, srv.ClientTokenValid(t1), srv.ClientTokenValid(t2))
	}
	srv.Advance(mpauthxtest.ClientTokenGrace - time.Second)
	if !srv.ClientTokenValid(t1) {
		t.Error("the previous token ended within its 5 minutes of grace")
	}
	srv.Advance(2 * time.Second)
	if srv.ClientTokenValid(t1) || !srv.ClientTokenValid(t2) {
		t.Errorf("5 minutes on: previous valid %t, latest valid %t; want false, true", srv.ClientTokenValid(t1), srv.ClientTokenValid(t2))
	}
	// Only the latest two live.
	t3 := goodClientToken(t, srv)
	t4 := goodClientToken(t, srv)
	if srv.ClientTokenValid(t2) || !srv.ClientTokenValid(t3) || !srv.ClientTokenValid(t4) {
		t.Errorf("after two more fetches: %t %t %t, want only the latest two valid", srv.ClientTokenValid(t2), srv.ClientTokenValid(t3), srv.ClientTokenValid(t4))
	}
	// A token ends after its lifetime, and ExpireClientToken ends them all.
	srv.Advance(mpauthxtest.ClientTokenLifetime)
	if srv.ClientTokenValid(t4) || srv.ClientToken() != "" {
		t.Error("a client_token outlived its 7200 s")
	}
	t5 := goodClientToken(t, srv)
	srv.ExpireClientToken()
	if srv.ClientTokenValid(t5) || srv.ClientToken() != "" {
		t.Error("ExpireClientToken left the token valid")
	}
	if n := srv.ClientTokenRequests(); n != 5 {
		t.Errorf("ClientTokenRequests = %d, want 5", n)
	}
}

func TestClientTokenErrors(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name   string
		method string
		body   any
		want   int
	}{
		{"wrong secret", http.MethodPost, map[string]string{"client_key": appID, "client_secret": "nope", "grant_type": "client_credential"}, mpauthxtest.DouyinErrCodeBadClientSecret},
		{"unknown key", http.MethodPost, map[string]string{"client_key": "tt-other", "client_secret": secret, "grant_type": "client_credential"}, mpauthxtest.DouyinErrCodeNoClientKey},
		{"no key", http.MethodPost, map[string]string{"client_secret": secret, "grant_type": "client_credential"}, mpauthxtest.DouyinErrCodeNoClientKey},
		{"grant type", http.MethodPost, map[string]string{"client_key": appID, "client_secret": secret, "grant_type": "authorization_code"}, mpauthxtest.DouyinErrCodeBadParams},
		{"not JSON", http.MethodPost, []byte("client_key=" + appID), mpauthxtest.DouyinErrCodeBadParams},
		{"GET", http.MethodGet, []byte(""), mpauthxtest.DouyinErrCodeBadParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := clientToken(t, srv, tt.method, tt.body)
			if r.Data.ErrorCode != tt.want || r.Data.Description == "" || r.Data.AccessToken != "" || r.Message != "error" {
				t.Errorf("client_token = %+v, want error_code %d", r, tt.want)
			}
		})
	}
	if srv.ClientToken() != "" {
		t.Error("a refused request made a token")
	}

	// Faults: an ErrCode in Douyin's shape, an HTTP status, a body.
	srv.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{ErrCode: 10020})
	srv.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{ErrCode: 10013, ErrMsg: "custom"})
	srv.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{Status: 502})
	srv.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{Delay: time.Millisecond})
	good := map[string]string{"client_key": appID, "client_secret": secret, "grant_type": "client_credential"}
	if _, r := clientToken(t, srv, http.MethodPost, good); r.Data.ErrorCode != 10020 || r.Data.Description == "" {
		t.Errorf("fault ErrCode 10020: %+v", r)
	}
	if _, r := clientToken(t, srv, http.MethodPost, good); r.Data.ErrorCode != 10013 || r.Data.Description != "custom" {
		t.Errorf("fault ErrCode 10013 with ErrMsg: %+v", r)
	}
	if status, _ := clientToken(t, srv, http.MethodPost, good); status != http.StatusBadGateway {
		t.Errorf("fault Status 502: HTTP %d", status)
	}
	goodClientToken(t, srv) // after a Delay, the normal answer
}
