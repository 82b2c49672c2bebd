package mpauthxtest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// apiReply is any of the server APIs' answers.
type apiReply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	ErrCode     int    `json:"errcode"`
	ErrMsg      string `json:"errmsg"`
	PhoneInfo   struct {
		PhoneNumber     string `json:"phoneNumber"`
		PurePhoneNumber string `json:"purePhoneNumber"`
		CountryCode     string `json:"countryCode"`
		Watermark       struct {
			AppID string `json:"appid"`
		} `json:"watermark"`
	} `json:"phone_info"`
}

// do sends a request to srv and decodes its JSON answer.
func do(t *testing.T, srv *mpauthxtest.Server, method, path string, q url.Values, body any) apiReply {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, srv.URL+path+"?"+q.Encode(), rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r apiReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// stable asks srv for a stable token.
func stable(t *testing.T, srv *mpauthxtest.Server, force bool) apiReply {
	t.Helper()
	return do(t, srv, http.MethodPost, mpauthxtest.StableTokenPath, nil, map[string]any{
		"grant_type": "client_credential", "appid": appID, "secret": secret, "force_refresh": force})
}

func TestStableToken(t *testing.T) {
	srv := newServer(t)
	r := stable(t, srv, false)
	if r.ErrCode != 0 || r.AccessToken == "" || r.ExpiresIn != 7200 || r.AccessToken != srv.AccessToken() {
		t.Fatalf("stable_token = %+v, want a token for 7200 s", r)
	}
	if !strings.Contains(r.AccessToken, "+") {
		t.Errorf("token %q has no character needing escape in a query", r.AccessToken)
	}
	t1 := r.AccessToken

	// Normal mode: the same token until its last 5 minutes...
	srv.Advance(time.Hour)
	if r := stable(t, srv, false); r.AccessToken != t1 || r.ExpiresIn < 3599 || r.ExpiresIn > 3600 {
		t.Errorf("an hour later = %+v, want the same token with 3600 s left", r)
	}
	// ... then the next one, the old one valid until it ends.
	srv.Advance(time.Hour - 4*time.Minute)
	r = stable(t, srv, false)
	t2 := r.AccessToken
	if t2 == t1 || r.ExpiresIn != 7200 {
		t.Errorf("in the last 5 minutes = %+v, want a new token", r)
	}
	if code := phoneWith(t, srv, t1, "nope"); code != mpauthxtest.ErrCodeInvalidCode {
		t.Errorf("the old token in its last minutes: errcode %d, want it accepted (40029 for the code)", code)
	}
	srv.Advance(5 * time.Minute)
	if code := phoneWith(t, srv, t1, "nope"); code != mpauthxtest.ErrCodeAccessTokenExpired {
		t.Errorf("the old token after its end: errcode %d, want 42001", code)
	}

	// Forced: a new token at once, the old one ended; 30 s apart.
	r = stable(t, srv, true)
	t3 := r.AccessToken
	if t3 == t2 || srv.ForcedRefreshes() != 1 {
		t.Errorf("forced = %+v, want a new token", r)
	}
	if code := phoneWith(t, srv, t2, "nope"); code != mpauthxtest.ErrCodeInvalidAccessToken {
		t.Errorf("the token a forced refresh replaced: errcode %d, want 40001", code)
	}
	if r := stable(t, srv, true); r.ErrCode != mpauthxtest.ErrCodeRateLimited {
		t.Errorf("forced again at once = %+v, want 45011", r)
	}
	for i := 2; i <= mpauthxtest.ForceRefreshDailyLimit; i++ {
		srv.Advance(mpauthxtest.ForceRefreshSpacing)
		if r := stable(t, srv, true); r.ErrCode != 0 {
			t.Fatalf("forced refresh %d = %+v", i, r)
		}
	}
	srv.Advance(mpauthxtest.ForceRefreshSpacing)
	if r := stable(t, srv, true); r.ErrCode != mpauthxtest.ErrCodeDailyQuota {
		t.Errorf("forced refresh 21 = %+v, want 45009", r)
	}
	srv.Advance(24 * time.Hour)
	if r := stable(t, srv, true); r.ErrCode != 0 {
		t.Errorf("forced refresh the next day = %+v", r)
	}

	// ExpireAccessToken: 40001 at once, a new token from normal mode.
	cur := srv.AccessToken()
	srv.ExpireAccessToken()
	if code := phoneWith(t, srv, cur, "nope"); code != mpauthxtest.ErrCodeInvalidAccessToken || srv.AccessToken() != "" {
		t.Errorf("an expired token: errcode %d, want 40001", code)
	}
	if r := stable(t, srv, false); r.AccessToken == cur || r.AccessToken == "" {
		t.Errorf("stable_token after ExpireAccessToken = %+v, want a new token", r)
	}

	for _, bad := range []map[string]any{
		{"grant_type": "x", "appid": appID, "secret": secret},
		{"grant_type": "client_credential", "appid": "x", "secret": secret},
		{"grant_type": "client_credential", "appid": appID, "secret": "x"},
	} {
		if r := do(t, srv, http.MethodPost, mpauthxtest.StableTokenPath, nil, bad); r.ErrCode == 0 {
			t.Errorf("stable_token with %v = %+v, want an errcode", bad, r)
		}
	}
	if r := do(t, srv, http.MethodGet, mpauthxtest.StableTokenPath, nil, nil); r.ErrCode != mpauthxtest.ErrCodeRequirePOST {
		t.Errorf("GET stable_token = %+v, want 43002", r)
	}
	if n := srv.AccessTokenRequests(); n != 31 {
		t.Errorf("AccessTokenRequests = %d, want 31", n)
	}
}

// phoneWith exchanges code with token and returns the errcode.
func phoneWith(t *testing.T, srv *mpauthxtest.Server, token, code string) int {
	t.Helper()
	return do(t, srv, http.MethodPost, mpauthxtest.PhoneNumberPath, url.Values{"access_token": {token}}, map[string]string{"code": code}).ErrCode
}

func TestPhoneCode(t *testing.T) {
	srv := newServer(t)
	cn := srv.AddUser(mpauthxtest.User{OpenID: "o-cn", Phone: "13800138000"})
	us := srv.AddUser(mpauthxtest.User{OpenID: "o-us", Phone: "2025550123", CountryCode: "1"})
	tok := stable(t, srv, false).AccessToken
	exchange := func(code, openID string) apiReply {
		return do(t, srv, http.MethodPost, mpauthxtest.PhoneNumberPath, url.Values{"access_token": {tok}}, map[string]string{"code": code, "openid": openID})
	}
	code := srv.PhoneCode(cn.OpenID)
	r := exchange(code, "")
	if r.ErrCode != 0 || r.PhoneInfo.PhoneNumber != "13800138000" || r.PhoneInfo.PurePhoneNumber != "13800138000" || r.PhoneInfo.CountryCode != "86" || r.PhoneInfo.Watermark.AppID != appID {
		t.Errorf("China = %+v", r)
	}
	if r := exchange(code, ""); r.ErrCode != mpauthxtest.ErrCodeInvalidCode {
		t.Errorf("reused = %+v, want 40029", r)
	}
	r = exchange(srv.PhoneCode(us.OpenID), us.OpenID)
	if r.ErrCode != 0 || r.PhoneInfo.PhoneNumber != "+12025550123" || r.PhoneInfo.PurePhoneNumber != "2025550123" || r.PhoneInfo.CountryCode != "1" {
		t.Errorf("foreign = %+v", r)
	}
	code = srv.PhoneCode(us.OpenID)
	if r := exchange(code, cn.OpenID); r.ErrCode != mpauthxtest.ErrCodeInvalidOpenID {
		t.Errorf("another user's = %+v, want 40003", r)
	}
	if r := exchange(code, us.OpenID); r.ErrCode != 0 {
		t.Errorf("after a mismatch, the code's own user = %+v, want it unused", r)
	}
	code = srv.PhoneCode(cn.OpenID)
	srv.Advance(mpauthxtest.PhoneCodeLifetime + time.Second)
	if r := exchange(code, ""); r.ErrCode != mpauthxtest.ErrCodeInvalidCode {
		t.Errorf("expired = %+v, want 40029", r)
	}
	if r := do(t, srv, http.MethodPost, mpauthxtest.PhoneNumberPath, nil, map[string]string{"code": srv.PhoneCode(cn.OpenID)}); r.ErrCode != mpauthxtest.ErrCodeMissingAccessToken {
		t.Errorf("without access_token = %+v, want 41001", r)
	}
	defer func() {
		if recover() == nil {
			t.Error("PhoneCode of a user without Phone did not panic")
		}
	}()
	srv.PhoneCode(srv.AddUser(mpauthxtest.User{OpenID: "o-nophone"}).OpenID)
}

func TestCheckSession(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	tok := stable(t, srv, false).AccessToken
	check := func(token, openID, key, method string) int {
		mac := hmac.New(sha256.New, []byte(key))
		return do(t, srv, http.MethodGet, mpauthxtest.CheckSessionPath, url.Values{
			"access_token": {token}, "openid": {openID}, "signature": {hex.EncodeToString(mac.Sum(nil))}, "sig_method": {method}}, nil).ErrCode
	}
	if code := check(tok, u.OpenID, u.SessionKey, "hmac_sha256"); code != 0 {
		t.Errorf("the current key: errcode %d, want 0", code)
	}
	old := u.SessionKey
	srv.SetSessionKey(u.OpenID, "")
	if code := check(tok, u.OpenID, old, "hmac_sha256"); code != mpauthxtest.ErrCodeInvalidSignature {
		t.Errorf("a rotated key: errcode %d, want 87009", code)
	}
	if code := check(tok, u.OpenID, old, "md5"); code != mpauthxtest.ErrCodeBadSigMethod {
		t.Errorf("another sig_method: errcode %d, want 87008", code)
	}
	if code := check(tok, "o-nobody", old, "hmac_sha256"); code != mpauthxtest.ErrCodeInvalidOpenID {
		t.Errorf("unknown openid: errcode %d, want 40003", code)
	}
	if code := check("nope", u.OpenID, old, "hmac_sha256"); code != mpauthxtest.ErrCodeInvalidAccessToken {
		t.Errorf("unknown token: errcode %d, want 40001", code)
	}
}

func TestFailNextAt(t *testing.T) {
	srv := newServer(t)
	srv.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: -1})
	srv.FailNextAt(mpauthxtest.CheckSessionPath, 1, mpauthxtest.Fault{ErrCode: 45011})
	if r := stable(t, srv, false); r.ErrCode != -1 {
		t.Errorf("stable_token with a fault = %+v, want -1", r)
	}
	if r := stable(t, srv, false); r.ErrCode != 0 {
		t.Errorf("stable_token after its fault = %+v", r)
	}
	if r := do(t, srv, http.MethodGet, mpauthxtest.CheckSessionPath, nil, nil); r.ErrCode != 45011 {
		t.Errorf("checksession with a fault = %+v, want 45011", r)
	}
	if srv.Requests() != 0 {
		t.Errorf("code2session counted %d requests of other paths", srv.Requests())
	}
	defer func() {
		if recover() == nil {
			t.Error("FailNextAt of an unknown path did not panic")
		}
	}()
	srv.FailNextAt("/nope", 1, mpauthxtest.Fault{})
}
