package mpauthxtest_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

const (
	appID  = "wx4f4bc4dec97d474b"
	secret = "s3cr3t"
)

// reply is a decoded code2session answer.
type reply struct {
	Status      int
	ContentType string
	Body        []byte
	OpenID      string `json:"openid"`
	SessionKey  string `json:"session_key"`
	UnionID     string `json:"unionid"`
	ErrCode     int    `json:"errcode"`
	ErrMsg      string `json:"errmsg"`
}

type params struct {
	appID, secret, grantType, code string
	omit                           map[string]bool // parameters left out
}

func okParams(code string) params {
	return params{appID: appID, secret: secret, grantType: "authorization_code", code: code}
}

// call sends a code2session request and decodes the answer as far as it
// is JSON.
func call(ctx context.Context, srv *mpauthxtest.Server, p params) (reply, error) {
	q := url.Values{}
	for k, v := range map[string]string{"appid": p.appID, "secret": p.secret, "grant_type": p.grantType, "js_code": p.code} {
		if !p.omit[k] {
			q.Set(k, v)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sns/jscode2session?"+q.Encode(), nil)
	if err != nil {
		return reply{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	var r reply
	_ = json.Unmarshal(body, &r) // faults may send anything; callers check Body
	r.Status, r.ContentType, r.Body = resp.StatusCode, resp.Header.Get("Content-Type"), body
	return r, nil
}

func mustCall(t *testing.T, srv *mpauthxtest.Server, p params) reply {
	t.Helper()
	r, err := call(context.Background(), srv, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newServer(t *testing.T) *mpauthxtest.Server {
	t.Helper()
	srv := mpauthxtest.NewServer(appID, secret)
	t.Cleanup(srv.Close)
	return srv
}

func TestCode2Session(t *testing.T) {
	tests := []struct {
		name    string
		user    mpauthxtest.User
		mod     func(p *params)
		errCode int
		errMsg  string
		unionID string
	}{
		{name: "ok", user: mpauthxtest.User{OpenID: "o1"}},
		{name: "ok with unionid", user: mpauthxtest.User{OpenID: "o1", UnionID: "u1"}, unionID: "u1"},
		{name: "unionid omitted", user: mpauthxtest.User{OpenID: "o1", UnionID: "u1", OmitUnionIDInSession: true}},
		{name: "wrong appid", mod: func(p *params) { p.appID = "wxother" }, errCode: 40013, errMsg: "invalid appid"},
		{name: "missing appid", mod: func(p *params) { p.omit = map[string]bool{"appid": true} }, errCode: 40013, errMsg: "invalid appid"},
		{name: "wrong secret", mod: func(p *params) { p.secret = "nope" }, errCode: 40125, errMsg: "invalid appsecret"},
		{name: "wrong grant_type", mod: func(p *params) { p.grantType = "client_credential" }, errCode: 40002, errMsg: "invalid grant_type"},
		{name: "missing code", mod: func(p *params) { p.omit = map[string]bool{"js_code": true} }, errCode: 41008, errMsg: "missing code"},
		{name: "empty code", mod: func(p *params) { p.code = "" }, errCode: 41008, errMsg: "missing code"},
		{name: "unknown code", mod: func(p *params) { p.code = "081nope" }, errCode: 40029, errMsg: "invalid code"},
		{name: "code with + decoded as space", mod: func(p *params) { p.code = strings.ReplaceAll(p.code, "+", " ") }, errCode: 40029, errMsg: "invalid code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			if tt.user.OpenID == "" {
				tt.user.OpenID = "o1"
			}
			u := srv.AddUser(tt.user)
			issued := srv.Code(u.OpenID)
			p := okParams(issued)
			if tt.mod != nil {
				tt.mod(&p)
			}
			r := mustCall(t, srv, p)
			if r.Status != http.StatusOK {
				t.Errorf("status = %d, want 200", r.Status)
			}
			if r.ContentType != "text/plain" {
				t.Errorf("Content-Type = %q, want text/plain", r.ContentType)
			}
			if r.ErrCode != tt.errCode {
				t.Fatalf("errcode = %d, want %d (body %s)", r.ErrCode, tt.errCode, r.Body)
			}
			if tt.errCode != 0 {
				if !strings.HasPrefix(r.ErrMsg, tt.errMsg+", rid: ") {
					t.Errorf("errmsg = %q, want %q + rid", r.ErrMsg, tt.errMsg)
				}
				if r.OpenID != "" || r.SessionKey != "" || bytes.Contains(r.Body, []byte("openid")) {
					t.Errorf("error answer carries a session: %s", r.Body)
				}
				// A failed exchange does not use up the code.
				if r := mustCall(t, srv, okParams(issued)); r.OpenID != u.OpenID {
					t.Errorf("code unusable after failed exchange: %s", r.Body)
				}
				return
			}
			if r.OpenID != u.OpenID || r.SessionKey != u.SessionKey || r.UnionID != tt.unionID {
				t.Errorf("got openid=%q session_key=%q unionid=%q, want %q %q %q",
					r.OpenID, r.SessionKey, r.UnionID, u.OpenID, u.SessionKey, tt.unionID)
			}
			if tt.unionID == "" && bytes.Contains(r.Body, []byte("unionid")) {
				t.Errorf("body has a unionid: %s", r.Body)
			}
			if bytes.Contains(r.Body, []byte("errcode")) {
				t.Errorf("success body has an errcode: %s", r.Body)
			}
		})
	}
}

func TestCodeSingleUse(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	c1, c2 := srv.Code(u.OpenID), srv.Code(u.OpenID)
	if c1 == c2 {
		t.Fatalf("Code returned %q twice", c1)
	}
	steps := []struct {
		code    string
		errCode int
	}{
		{c1, 0},
		{c1, 40163},
		{c1, 40163},
		{c2, 0},
		{c2, 40163},
	}
	for i, s := range steps {
		r := mustCall(t, srv, okParams(s.code))
		if r.ErrCode != s.errCode {
			t.Fatalf("step %d: errcode = %d, want %d (%s)", i, r.ErrCode, s.errCode, r.Body)
		}
		if s.errCode == 40163 && !strings.HasPrefix(r.ErrMsg, "code been used") {
			t.Errorf("step %d: errmsg = %q", i, r.ErrMsg)
		}
	}
	if got := srv.Requests(); got != len(steps) {
		t.Errorf("Requests() = %d, want %d", got, len(steps))
	}
}

func TestCodeFormat(t *testing.T) {
	srv := newServer(t)
	srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	seen := map[string]bool{}
	for range 200 {
		c := srv.Code("o1")
		if seen[c] {
			t.Fatalf("duplicate code %q", c)
		}
		seen[c] = true
		if c == "" || strings.Contains(c, "|") {
			t.Fatalf("bad code %q", c)
		}
		for _, r := range c {
			if r < 0x21 || r > 0x7e {
				t.Fatalf("code %q has non-printable or non-ASCII %q", c, r)
			}
		}
		if url.QueryEscape(c) == c {
			t.Fatalf("code %q needs no escaping; want it to", c)
		}
	}
}

func TestNotFound(t *testing.T) {
	srv := newServer(t)
	for _, path := range []string{"/", "/sns/jscode2sessionx", "/cgi-bin/token", "/sns/jscode2session/x"} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status = %d, want 404", resp.StatusCode)
			}
		})
	}
	if n := srv.Requests(); n != 0 {
		t.Errorf("Requests() = %d after requests to other paths, want 0", n)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name        string
		fault       mpauthxtest.Fault
		status      int
		body        string // exact body, when errCode == 0
		errCode     int
		errMsg      string // prefix
		codeIntact  bool   // the code still works afterwards
		normalReply bool
	}{
		{name: "status only", fault: mpauthxtest.Fault{Status: 500}, status: 500, body: "Internal Server Error", codeIntact: true},
		{name: "status 502", fault: mpauthxtest.Fault{Status: 502}, status: 502, body: "Bad Gateway", codeIntact: true},
		{name: "errcode default msg", fault: mpauthxtest.Fault{ErrCode: 45011}, status: 200, errCode: 45011, errMsg: "api minute-quota reach limit", codeIntact: true},
		{name: "errcode system error", fault: mpauthxtest.Fault{ErrCode: -1}, status: 200, errCode: -1, errMsg: "system error, rid: ", codeIntact: true},
		{name: "errcode custom msg", fault: mpauthxtest.Fault{ErrCode: 40226, ErrMsg: "high risk user"}, status: 200, errCode: 40226, errMsg: "high risk user", codeIntact: true},
		{name: "errcode with status", fault: mpauthxtest.Fault{Status: 503, ErrCode: -1}, status: 503, errCode: -1, errMsg: "system error", codeIntact: true},
		{name: "raw body", fault: mpauthxtest.Fault{Body: []byte(`{"openid":`)}, status: 200, body: `{"openid":`, codeIntact: true},
		{name: "raw body overrides errcode", fault: mpauthxtest.Fault{ErrCode: 40029, Body: []byte("<html>")}, status: 200, body: "<html>", codeIntact: true},
		{name: "empty body", fault: mpauthxtest.Fault{Body: []byte{}}, status: 200, body: "", codeIntact: true},
		{name: "empty body with status", fault: mpauthxtest.Fault{Status: 504, Body: []byte{}}, status: 504, body: "", codeIntact: true},
		{name: "delay only", fault: mpauthxtest.Fault{Delay: 50 * time.Millisecond}, status: 200, normalReply: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			u := srv.AddUser(mpauthxtest.User{OpenID: "o1"})
			code := srv.Code(u.OpenID)
			srv.FailNext(1, tt.fault)
			start := time.Now()
			r := mustCall(t, srv, okParams(code))
			if el := time.Since(start); el < tt.fault.Delay {
				t.Errorf("answered after %v, want >= %v", el, tt.fault.Delay)
			}
			if r.Status != tt.status {
				t.Errorf("status = %d, want %d", r.Status, tt.status)
			}
			if r.ContentType != "text/plain" {
				t.Errorf("Content-Type = %q, want text/plain", r.ContentType)
			}
			switch {
			case tt.normalReply:
				if r.OpenID != u.OpenID || r.SessionKey != u.SessionKey {
					t.Errorf("want the normal answer, got %s", r.Body)
				}
			case tt.errCode != 0:
				if r.ErrCode != tt.errCode || !strings.HasPrefix(r.ErrMsg, tt.errMsg) {
					t.Errorf("got errcode %d errmsg %q, want %d %q...", r.ErrCode, r.ErrMsg, tt.errCode, tt.errMsg)
				}
			default:
				if string(r.Body) != tt.body {
					t.Errorf("body = %q, want %q", r.Body, tt.body)
				}
			}
			// The fault is used up: the next request gets the normal answer.
			r = mustCall(t, srv, okParams(code))
			switch {
			case tt.codeIntact && r.OpenID != u.OpenID:
				t.Errorf("after fault: want a session, got %d %s", r.Status, r.Body)
			case !tt.codeIntact && r.ErrCode != 40163:
				t.Errorf("after fault: want 40163, got %d %s", r.Status, r.Body)
			}
			if n := srv.Requests(); n != 2 {
				t.Errorf("Requests() = %d, want 2", n)
			}
		})
	}
}

func TestFaultQueue(t *testing.T) {
	srv := newServer(t)
	srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	body := []byte("first")
	srv.FailNext(1, mpauthxtest.Fault{Body: body})
	body[0] = 'X' // FailNext must have copied it
	srv.FailNext(2, mpauthxtest.Fault{ErrCode: 45011})
	srv.FailNext(0, mpauthxtest.Fault{Status: 500})
	srv.FailNext(-3, mpauthxtest.Fault{Status: 500})
	srv.FailNext(1, mpauthxtest.Fault{Status: 500})

	want := []string{"first", "45011", "45011", "500", "ok", "ok"}
	for i, w := range want {
		// Faults apply whatever the request: even an invalid one.
		p := okParams(srv.Code("o1"))
		if i == 1 {
			p.appID = "wrong"
		}
		r := mustCall(t, srv, p)
		var got string
		switch {
		case r.Status != 200:
			got = fmt.Sprint(r.Status)
		case r.ErrCode != 0:
			got = fmt.Sprint(r.ErrCode)
		case r.OpenID == "o1":
			got = "ok"
		default:
			got = string(r.Body)
		}
		if got != w {
			t.Errorf("request %d: got %s, want %s", i, got, w)
		}
	}
	if n := srv.Requests(); n != len(want) {
		t.Errorf("Requests() = %d, want %d", n, len(want))
	}
}

func TestFaultDelayCancelled(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	code := srv.Code(u.OpenID)
	srv.FailNext(1, mpauthxtest.Fault{Delay: time.Minute, ErrCode: 40029})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := call(ctx, srv, okParams(code))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context deadline exceeded", err)
	}
	// The handler must notice the cancellation and return by itself,
	// without waiting for Close.
	waitNoHandler(t)
	r := mustCall(t, srv, okParams(code))
	if r.OpenID != u.OpenID {
		t.Errorf("after cancelled fault: want a session, got %s", r.Body)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs after a cancelled delay")
	}
	if n := srv.Requests(); n != 2 {
		t.Errorf("Requests() = %d, want 2", n)
	}
}

// waitNoHandler waits until no goroutine is running the code2session
// handler, and fails the test if that takes long.
func waitNoHandler(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("handleCode2Session")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler is still running after the client gave up:\n%s", buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseEndsDelay(t *testing.T) {
	srv := mpauthxtest.NewServer(appID, secret)
	srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	srv.FailNext(1, mpauthxtest.Fault{Delay: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, err := call(context.Background(), srv, okParams(srv.Code("o1")))
		errc <- err
	}()
	for srv.Requests() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	srv.Close()
	srv.Close() // idempotent
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Close took %v", el)
	}
	select {
	case <-errc: // any outcome; it must just finish
	case <-time.After(10 * time.Second):
		t.Fatal("request still pending after Close")
	}
}

// decrypt is an independent AES-128-CBC + PKCS#7 decrypter.
func decrypt(t *testing.T, sessionKey, data, iv string) []byte {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(sessionKey)
	if err != nil || len(key) != 16 {
		t.Fatalf("session key %q: %v (len %d)", sessionKey, err, len(key))
	}
	ivb, err := base64.StdEncoding.DecodeString(iv)
	if err != nil || len(ivb) != aes.BlockSize {
		t.Fatalf("iv %q: %v (len %d)", iv, err, len(ivb))
	}
	ct, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatalf("encryptedData: %v", err)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		t.Fatalf("ciphertext length %d is not a positive multiple of 16", len(ct))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, ivb).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n < 1 || n > aes.BlockSize {
		t.Fatalf("bad padding length %d", n)
	}
	for _, b := range pt[len(pt)-n:] {
		if int(b) != n {
			t.Fatalf("bad padding bytes % x", pt[len(pt)-n:])
		}
	}
	return pt[:len(pt)-n]
}

type info struct {
	OpenID    string  `json:"openId"`
	NickName  string  `json:"nickName"`
	Gender    int     `json:"gender"`
	Language  string  `json:"language"`
	City      string  `json:"city"`
	Province  string  `json:"province"`
	Country   string  `json:"country"`
	AvatarURL string  `json:"avatarUrl"`
	UnionID   *string `json:"unionId"`
	Watermark struct {
		Timestamp int64  `json:"timestamp"`
		AppID     string `json:"appid"`
	} `json:"watermark"`
}

func TestUserInfo(t *testing.T) {
	tests := []struct {
		name string
		user mpauthxtest.User
	}{
		{"full", mpauthxtest.User{
			OpenID: "oGZUI0egBJY1zhBYw2KhdUfwVJJE", UnionID: "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
			NickName: "Band", Gender: 1, Language: "zh_CN", City: "Guangzhou", Province: "Guangdong",
			Country: "CN", AvatarURL: "http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0",
		}},
		{"no unionid", mpauthxtest.User{OpenID: "o2", NickName: "安", Gender: 2}},
		{"unionid omitted from session", mpauthxtest.User{OpenID: "o3", UnionID: "u3", OmitUnionIDInSession: true}},
		{"given session key", mpauthxtest.User{OpenID: "o4", SessionKey: "tiihtNczf5v6AKRyjwEUhQ=="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			u := srv.AddUser(tt.user)
			if tt.user.SessionKey != "" && u.SessionKey != tt.user.SessionKey {
				t.Errorf("SessionKey = %q, want the given %q", u.SessionKey, tt.user.SessionKey)
			}
			// The key code2session hands out decrypts the data.
			r := mustCall(t, srv, okParams(srv.Code(u.OpenID)))
			data, iv := srv.UserInfo(u.OpenID)
			plain := decrypt(t, r.SessionKey, data, iv)

			var got info
			if err := json.Unmarshal(plain, &got); err != nil {
				t.Fatalf("plaintext %q: %v", plain, err)
			}
			if got.OpenID != u.OpenID || got.NickName != u.NickName || got.Gender != u.Gender ||
				got.Language != u.Language || got.City != u.City || got.Province != u.Province ||
				got.Country != u.Country || got.AvatarURL != u.AvatarURL {
				t.Errorf("got %+v, want %+v", got, u)
			}
			switch {
			case u.UnionID == "" && got.UnionID != nil:
				t.Errorf("unionId = %q, want it omitted", *got.UnionID)
			case u.UnionID != "" && (got.UnionID == nil || *got.UnionID != u.UnionID):
				t.Errorf("unionId = %v, want %q", got.UnionID, u.UnionID)
			}
			if got.Watermark.AppID != appID {
				t.Errorf("watermark appid = %q, want %q", got.Watermark.AppID, appID)
			}
			if d := time.Since(time.Unix(got.Watermark.Timestamp, 0)); d < -2*time.Second || d > time.Minute {
				t.Errorf("watermark timestamp %d is %v from now", got.Watermark.Timestamp, d)
			}
			// A fresh iv each time.
			data2, iv2 := srv.UserInfo(u.OpenID)
			if iv2 == iv || data2 == data {
				t.Errorf("UserInfo reused iv %q", iv)
			}
		})
	}
}

func TestEncryptFor(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			plain := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
			data, iv := srv.EncryptFor(u.OpenID, plain)
			ct, _ := base64.StdEncoding.DecodeString(data)
			if want := (n/16 + 1) * 16; len(ct) != want {
				t.Errorf("ciphertext is %d bytes, want %d", len(ct), want)
			}
			if got := decrypt(t, u.SessionKey, data, iv); !bytes.Equal(got, plain) {
				t.Errorf("round trip: got %q, want %q", got, plain)
			}
		})
	}
}

func TestSetSessionKey(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	code := srv.Code(u.OpenID) // handed out before the rotation

	const newKey = "AAECAwQFBgcICQoLDA0ODw=="
	srv.SetSessionKey(u.OpenID, newKey)
	if r := mustCall(t, srv, okParams(code)); r.SessionKey != newKey {
		t.Errorf("session_key = %q, want %q", r.SessionKey, newKey)
	}
	if got, _ := srv.User(u.OpenID); got.SessionKey != newKey {
		t.Errorf("User().SessionKey = %q", got.SessionKey)
	}
	plain := []byte(`{"openId":"o1"}`)
	data, iv := srv.EncryptFor(u.OpenID, plain)
	if got := decrypt(t, newKey, data, iv); !bytes.Equal(got, plain) {
		t.Errorf("decrypt with new key: %q", got)
	}

	srv.SetSessionKey(u.OpenID, "")
	got, ok := srv.User(u.OpenID)
	if !ok || got.SessionKey == newKey || got.SessionKey == "" {
		t.Fatalf("SetSessionKey(\"\") left key %q", got.SessionKey)
	}
	data, iv = srv.UserInfo(u.OpenID)
	decrypt(t, got.SessionKey, data, iv)

	// A malformed key is handed out as is.
	srv.SetSessionKey(u.OpenID, "not base64!")
	if r := mustCall(t, srv, okParams(srv.Code(u.OpenID))); r.SessionKey != "not base64!" {
		t.Errorf("session_key = %q", r.SessionKey)
	}
}

func TestAddUser(t *testing.T) {
	srv := newServer(t)
	u := srv.AddUser(mpauthxtest.User{OpenID: "o1", NickName: "Ann"})
	key, err := base64.StdEncoding.DecodeString(u.SessionKey)
	if err != nil || len(key) != 16 {
		t.Fatalf("SessionKey %q: %v, %d bytes", u.SessionKey, err, len(key))
	}
	if v := srv.AddUser(mpauthxtest.User{OpenID: "o2"}); v.SessionKey == u.SessionKey {
		t.Error("two users got the same session key")
	}
	code := srv.Code("o1")
	// Replacing keeps earlier codes valid and uses the new data.
	srv.AddUser(mpauthxtest.User{OpenID: "o1", NickName: "Bob", UnionID: "u1"})
	if r := mustCall(t, srv, okParams(code)); r.OpenID != "o1" || r.UnionID != "u1" || r.SessionKey == u.SessionKey {
		t.Errorf("after replacing: %s", r.Body)
	}
	if _, ok := srv.User("nobody"); ok {
		t.Error("User reports an unknown user")
	}
}

func TestPanics(t *testing.T) {
	srv := newServer(t)
	srv.AddUser(mpauthxtest.User{OpenID: "o1", SessionKey: "short"})
	tests := []struct {
		name string
		f    func()
	}{
		{"AddUser empty OpenID", func() { srv.AddUser(mpauthxtest.User{NickName: "x"}) }},
		{"Code unknown", func() { srv.Code("nobody") }},
		{"UserInfo unknown", func() { srv.UserInfo("nobody") }},
		{"EncryptFor unknown", func() { srv.EncryptFor("nobody", nil) }},
		{"SetSessionKey unknown", func() { srv.SetSessionKey("nobody", "") }},
		{"UserInfo bad key", func() { srv.UserInfo("o1") }},
		{"EncryptFor bad key", func() { srv.EncryptFor("o1", []byte("x")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.f()
		})
	}
}

func TestConcurrent(t *testing.T) {
	srv := newServer(t)
	const users, perUser = 8, 25
	for i := range users {
		srv.AddUser(mpauthxtest.User{OpenID: fmt.Sprint("o", i), UnionID: fmt.Sprint("u", i)})
	}
	var wg sync.WaitGroup
	errc := make(chan error, users*perUser)
	for i := range users {
		id := fmt.Sprint("o", i)
		for range perUser {
			wg.Go(func() {
				code := srv.Code(id)
				// Two racing exchanges of the same code: exactly one wins.
				var rs [2]reply
				var inner sync.WaitGroup
				for k := range rs {
					inner.Go(func() {
						r, err := call(context.Background(), srv, okParams(code))
						if err != nil {
							errc <- err
						}
						rs[k] = r
					})
				}
				inner.Wait()
				wins := 0
				for _, r := range rs {
					switch {
					case r.ErrCode == 0 && r.OpenID == id:
						wins++
					case r.ErrCode != 40163:
						errc <- fmt.Errorf("%s: unexpected answer %s", id, r.Body)
					}
				}
				if wins != 1 {
					errc <- fmt.Errorf("%s: %d exchanges of one code succeeded", id, wins)
				}
				data, iv := srv.UserInfo(id)
				if data == "" || iv == "" {
					errc <- fmt.Errorf("%s: empty UserInfo", id)
				}
				_ = srv.Requests()
			})
		}
	}
	// Meanwhile, rotate keys, re-add users and queue (harmless) faults.
	wg.Go(func() {
		for i := range 50 {
			srv.SetSessionKey(fmt.Sprint("o", i%users), "")
			srv.AddUser(mpauthxtest.User{OpenID: fmt.Sprint("o", i%users), UnionID: fmt.Sprint("u", i%users)})
			srv.FailNext(1, mpauthxtest.Fault{Delay: time.Microsecond})
			_, _ = srv.User("o0")
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n, want := srv.Requests(), users*perUser*2; n != want {
		t.Errorf("Requests() = %d, want %d", n, want)
	}
}
