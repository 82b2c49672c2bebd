package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// The real servers the walkthrough also runs against, as in the library's
// tests: a Redis when MPAUTHX_REDIS_ADDR is set, a Redis Cluster when
// MPAUTHX_REDIS_CLUSTER holds its comma-separated seeds.
const (
	envRedisAddr    = "MPAUTHX_REDIS_ADDR"
	envRedisCluster = "MPAUTHX_REDIS_CLUSTER"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// missingInOrder returns the first of wants not found in s after the
// previous one, or "" when all are there in order.
func missingInOrder(s string, wants []string) string {
	for _, w := range wants {
		i := strings.Index(s, w)
		if i < 0 {
			return w
		}
		s = s[i+len(w):]
	}
	return ""
}

// valueAfter returns the rest of the first line of s that starts with
// prefix (after leading spaces), or "".
func valueAfter(s, prefix string) string {
	for line := range strings.Lines(s) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func TestWalkthrough(t *testing.T) {
	const password = "pw-0f-the-test-redis"
	mr := miniredis.RunT(t)
	mr.RequireAuth(password)

	tests := []struct {
		name     string
		env      string // skip unless set; its value is the -redis address
		args     []string
		oneSeed  bool   // pass only the first address of env
		password string // set as $MPAUTHX_REDIS_PASSWORD
		want     string // on the "Redis:" line
	}{
		{name: "embedded miniredis", want: "embedded miniredis at 127.0.0.1:"},
		{name: "redis with -redis-password", args: []string{"-redis", mr.Addr(), "-redis-password", password}, want: "Redis at " + mr.Addr()},
		{name: "redis with the password from the environment", args: []string{"-redis", mr.Addr()}, password: password, want: "Redis at " + mr.Addr()},
		{name: "real redis", env: envRedisAddr, want: "Redis at "},
		{name: "redis cluster", env: envRedisCluster, want: "Redis Cluster at "},
		{name: "redis cluster from one seed", env: envRedisCluster, oneSeed: true, want: "Redis Cluster at "},
	}
	wantSteps := []string{
		"Redis:", "SQLite:", "WeChat:",
		"1. The mini program calls wx.login",
		"2. res, err := c.Authorize(ctx, code, encryptedData, iv)\n", `-> status_code 1 "OK"`, "-> token ",
		"3. c.IsTokenValid(ctx, token)\n   -> true",
		"4. c.Authorize(ctx, code, encryptedData, iv) again", "-> status_code 6008", "errcode 40163",
		"5. The user logs in on a second device: c.AuthorizeCode(ctx, newCode)", "-> the same token: true",
		"6. c.RefreshToken(ctx, ", `-> status_code 1 "OK"`, "-> new token ",
		"7. c.IsTokenValid(ctx, oldToken)\n   -> false",
		"8. c.IsTokenValid(ctx, newToken)\n   -> true",
		"9. c.RevokeToken(ctx, newToken)", "-> err = nil",
		"10. c.IsTokenValid(ctx, newToken)\n    -> false",
		"11. The phone-number login", "phoneCode = p+",
		"12. res, err := c.AuthorizePhone(ctx, code, phoneCode)", `-> status_code 1 "OK"`, "-> the same user ID: true",
		"13. c.User(ctx, ", "-> Phone 13800138000",
		"14. c.Decrypt(ctx, userID, encryptedData, iv)", `"step":8848`,
		"15. c.CheckSessionKey(ctx, userID)\n    -> true",
		"16. c.AccessToken(ctx)", "stable_token calls so far: 1",
		"17. c.RevokeToken(ctx, token)", "status_code 6014",
		"18. The same person opens your official account's pages", "/connect/oauth2/authorize?appid=wx-demo-oa&redirect_uri=https%3A%2F%2Fexample.com%2Fwechat%2Fcallback&response_type=code&scope=snsapi_userinfo&state=",
		"19. WeChat sends the browser back", "https://example.com/wechat/callback?code=", "-> state matches: true",
		"20. res, err := oa.AuthorizeCode(ctx, callbackCode)", `-> status_code 1 "OK"`, "-> the same user ID as in the mini program: uDemo-",
		"the mini program's Client accepts the token too",
		"21. c.User(ctx, ",
		"Done: every step behaved as documented.",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.env != "" {
				addr := os.Getenv(tt.env)
				if addr == "" {
					t.Skipf("%s is not set", tt.env)
				}
				if tt.oneSeed {
					addr, _, _ = strings.Cut(addr, ",")
				}
				args = []string{"-redis", addr}
			}
			t.Setenv(envPassword, tt.password)
			var stdout, stderr syncBuffer
			if err := run(t.Context(), args, &stdout, &stderr); err != nil {
				t.Fatalf("run(%q) = %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			if w := missingInOrder(out, wantSteps); w != "" {
				t.Fatalf("output lacks %q (in order); output:\n%s", w, out)
			}

			if e := stderr.String(); !strings.Contains(e, "level=INFO") || !strings.Contains(e, "errcode 40163") {
				t.Errorf("stderr lacks the Logger's INFO line about the reused code:\n%s", e)
			}

			if got := valueAfter(out, "Redis:"); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Redis: %q, want it to start with %q", got, tt.want)
			}

			oldToken, newToken := valueAfter(out, "-> token "), valueAfter(out, "-> new token ")
			for _, tok := range []string{oldToken, newToken} {
				parts := strings.Split(tok, "|")
				if len(parts) != 3 || !strings.HasPrefix(parts[0], "uDemo-") || parts[1] != demoSku || len(parts[2]) < 20 {
					t.Errorf("token %q is not <uDemo-...>|%s|<session> (the unionid: today's rule for a new user)", tok, demoSku)
				}
				if s := parts[len(parts)-1]; strings.Contains(stderr.String(), s) {
					t.Errorf("stderr holds a token's session %q:\n%s", s, stderr.String())
				}
			}
			if oldToken == newToken {
				t.Errorf("RefreshToken printed the old token %q again", oldToken)
			}

			dbPath, _, _ := strings.Cut(valueAfter(out, "SQLite:"), " (removed at exit)")
			if !strings.HasSuffix(dbPath, "users.db") {
				t.Fatalf("no SQLite path in the output:\n%s", out)
			}
			if _, err := os.Stat(filepath.Dir(dbPath)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the SQLite directory %s is still there after run: %v", filepath.Dir(dbPath), err)
			}
		})
	}
}

// listening runs the demo with -listen addr and returns its base URL, its
// output so far, and stop, which cancels it and returns run's error.
func listening(t *testing.T, addr string) (base string, out *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	out = &syncBuffer{}
	var stderr syncBuffer
	errc := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-listen", addr}, pw, &stderr)
		pw.Close()
		errc <- err
	}()
	addrc := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if a, ok := strings.CutPrefix(line, "listening on "); ok {
				addrc <- a
			}
		}
		io.Copy(io.Discard, pr)
	}()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		<-copied
		return <-errc
	}
	t.Cleanup(func() { stop() })
	select {
	case a := <-addrc:
		return "http://" + a, out, stop
	case <-copied:
		err := stop()
		t.Fatalf("run ended before listening: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	return "", nil, nil
}

// call sends a request to the demo and decodes its JSON reply.
func call(t *testing.T, method, u, token, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s %s: reply %q is not a JSON object: %v", method, u, raw, err)
		}
	}
	return resp.StatusCode, v
}

// statusCode returns a Result reply's status_code.
func statusCode(v map[string]any) int {
	f, _ := v["status_code"].(float64)
	return int(f)
}

func TestListen(t *testing.T) {
	base, out, stop := listening(t, "127.0.0.1:0")
	const jsonType = "application/json"

	for _, want := range []string{base + "/dev/code?openid=", base + "/login", base + "/login/phone", base + "/refresh", base + "/logout", base + "/me", base + "/debug/stats", "curl "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "WARNING") {
		t.Errorf("a loopback listener got the warning meant for others:\n%s", out.String())
	}

	// A fake wx.login, then the JSON login with encryptedData and iv.
	st, dev := call(t, "GET", base+"/dev/code?openid=o-test", "", "", "")
	if st != http.StatusOK || dev["openid"] != "o-test" || dev["code"] == "" || dev["encryptedData"] == "" || dev["iv"] == "" {
		t.Fatalf("GET /dev/code = %d %v", st, dev)
	}
	devJSON, _ := json.Marshal(dev)
	st, res := call(t, "POST", base+"/login", "", jsonType, string(devJSON))
	token, _ := res["response"].(string)
	if st != http.StatusOK || statusCode(res) != 1 || !strings.HasPrefix(token, "o-test|"+demoSku+"|") {
		t.Fatalf("POST /login = %d %v", st, res)
	}

	st, me := call(t, "GET", base+"/me", token, "", "")
	if st != http.StatusOK || me["openid"] != "o-test" {
		t.Fatalf("GET /me with the token = %d %v, want 200 {openid: o-test}", st, me)
	}

	// The official account's login: the state cookie, the fake WeChat's
	// page, the callback.
	t.Run("official account", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar}
		resp, err := browser.Get(base + "/oa/login")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "oa-o-test") {
			t.Fatalf("GET /oa/login = %d, want the fake page listing oa-o-test:\n%s", resp.StatusCode, page)
		}
		var res map[string]any
		resp, err = browser.Get(base + "/oa/login?as=oa-o-test")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		oaToken, _ := res["response"].(string)
		if resp.StatusCode != http.StatusOK || statusCode(res) != 1 || !strings.Contains(oaToken, "|"+demoSku+"|") {
			t.Fatalf("the official account's login = %d %v", resp.StatusCode, res)
		}
		// A callback whose state is not the browser's is refused, code
		// or not: someone else's login.
		noFollow := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = noFollow.Get(base + "/oa/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, q := range []string{"?code=c&state=forged", "?code=c", ""} {
			if st, res := call(t, "GET", base+"/oa/callback"+q, "", "", ""); st != http.StatusBadRequest || statusCode(res) != 6001 {
				t.Errorf("GET /oa/callback%s without the cookie = %d %v, want 400", q, st, res)
			}
		}
	})

	st, res = call(t, "POST", base+"/refresh", token, "", "")
	newToken, _ := res["response"].(string)
	if st != http.StatusOK || statusCode(res) != 1 || newToken == token || !strings.HasPrefix(newToken, "o-test|"+demoSku+"|") {
		t.Fatalf("POST /refresh = %d %v, want a new token of o-test", st, res)
	}
	if st, me = call(t, "GET", base+"/me", token, "", ""); st != http.StatusUnauthorized || statusCode(me) != 6007 {
		t.Errorf("GET /me with the refreshed-away token = %d %v, want 401 6007", st, me)
	}
	if st, me = call(t, "GET", base+"/me", newToken, "", ""); st != http.StatusOK || me["openid"] != "o-test" {
		t.Errorf("GET /me with the new token = %d %v, want 200", st, me)
	}

	// The code-only login with a form body, as curl --data-urlencode sends.
	_, devBob := call(t, "GET", base+"/dev/code?openid=o-bob", "", "", "")
	form := url.Values{"code": {devBob["code"].(string)}}.Encode()
	st, res = call(t, "POST", base+"/login", "", "application/x-www-form-urlencoded", form)
	if bobToken, _ := res["response"].(string); st != http.StatusOK || !strings.HasPrefix(bobToken, "o-bob|"+demoSku+"|") {
		t.Errorf("POST /login (form, code only) = %d %v", st, res)
	}

	// The phone-number login, with the same /dev/code reply as a body.
	_, devCarol := call(t, "GET", base+"/dev/code?openid=o-carol", "", "", "")
	carolJSON, _ := json.Marshal(devCarol)
	st, res = call(t, "POST", base+"/login/phone", "", jsonType, string(carolJSON))
	if carolToken, _ := res["response"].(string); st != http.StatusOK || !strings.HasPrefix(carolToken, "o-carol|"+demoSku+"|") {
		t.Errorf("POST /login/phone = %d %v", st, res)
	}

	_, devEve := call(t, "GET", base+"/dev/code?openid=o-eve", "", "", "")
	_, devDan := call(t, "GET", base+"/dev/code?openid=o-dan", "", "", "")
	bad := []struct {
		name, method, path, token, contentType, body string
		wantHTTP, wantCode                           int // wantCode 0: no Result body expected
	}{
		{"login without code", "POST", "/login", "", jsonType, `{}`, 400, 6001},
		{"login with a body that is not JSON", "POST", "/login", "", jsonType, `{"code":`, 400, 6001},
		{"login with encryptedData but no iv", "POST", "/login", "", jsonType, `{"code":"c","encryptedData":"x"}`, 400, 6001},
		{"login with a used code", "POST", "/login", "", jsonType, string(devJSON), 401, 6008},
		{"login with an unknown code", "POST", "/login", "", "application/x-www-form-urlencoded", "code=nope", 401, 6008},
		{"login with another user's encryptedData", "POST", "/login", "", jsonType,
			`{"code":"` + devEve["code"].(string) + `","encryptedData":"` + dev["encryptedData"].(string) + `","iv":"` + dev["iv"].(string) + `"}`, 400, 6011},
		{"phone login without phoneCode", "POST", "/login/phone", "", jsonType, `{"code":"c"}`, 400, 6001},
		{"phone login with a used phone code", "POST", "/login/phone", "", jsonType,
			`{"code":"` + devDan["code"].(string) + `","phoneCode":"` + devCarol["phoneCode"].(string) + `"}`, 401, 6013},
		{"me without a token", "GET", "/me", "", "", "", 401, 6007},
		{"me with a forged token", "GET", "/me", "o-test|" + demoSku + "|AAAAAAAAAAAAAAAAAAAAAAAAAA", "", "", 401, 6007},
		{"refresh without a token", "POST", "/refresh", "", "", "", 401, 6007},
		{"refresh with the old token", "POST", "/refresh", token, "", "", 401, 6007},
		{"GET login", "GET", "/login", "", "", "", 405, 0},
		{"dev code with a bad openid", "GET", "/dev/code?openid=a%7Cb", "", "", "", 400, 0},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			st, res := call(t, tt.method, base+tt.path, tt.token, tt.contentType, tt.body)
			if st != tt.wantHTTP || (tt.wantCode != 0 && statusCode(res) != tt.wantCode) {
				t.Errorf("%s %s = %d %v, want %d status_code %d", tt.method, tt.path, st, res, tt.wantHTTP, tt.wantCode)
			}
			if tt.wantCode != 0 && res["response"] != "" {
				t.Errorf("a failed call replied with a token: %v", res)
			}
		})
	}
	// The refresh above must not have rotated anything: newToken still works.
	if st, _ = call(t, "GET", base+"/me", newToken, "", ""); st != http.StatusOK {
		t.Errorf("GET /me with the live token after the failures = %d, want 200", st)
	}

	// Logging out revokes the token the caller authenticated with.
	if st, res = call(t, "POST", base+"/logout", newToken, "", ""); st != http.StatusOK || statusCode(res) != 1 || res["response"] != "" {
		t.Errorf("POST /logout = %d %v, want 200 status_code 1", st, res)
	}
	if st, me = call(t, "GET", base+"/me", newToken, "", ""); st != http.StatusUnauthorized || statusCode(me) != 6007 {
		t.Errorf("GET /me after logging out = %d %v, want 401 6007", st, me)
	}
	if st, res = call(t, "POST", base+"/logout", newToken, "", ""); st != http.StatusUnauthorized || statusCode(res) != 6007 {
		t.Errorf("POST /logout again = %d %v, want 401 6007", st, res)
	}

	// The counters of all the above.
	st, stats := call(t, "GET", base+"/debug/stats", "", "", "")
	logins, _ := stats["Logins"].(map[string]any)
	if st != http.StatusOK || logins["1"] != 3.0 || logins["6008"] != 2.0 || stats["Checks"].(float64) < 8 || stats["PlatformCalls"].(float64) < 8 {
		t.Errorf("GET /debug/stats = %d %v", st, stats)
	}

	if err := stop(); err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	logged := out.String()
	if !strings.Contains(logged, "shutting down") || !strings.Contains(logged, "POST /refresh -> 200") {
		t.Errorf("output lacks the request log or the shutdown:\n%s", logged)
	}
	for _, tok := range []string{token, newToken} {
		if session := tok[strings.LastIndexByte(tok, '|')+1:]; strings.Contains(logged, session) {
			t.Errorf("the output holds a token's session %q", session)
		}
	}
	if _, err := http.Get(base + "/me"); err == nil {
		t.Errorf("the server still answers after run returned")
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantExit int
		wantMsg  string
	}{
		{"unknown flag", []string{"-nope"}, 2, "-nope"},
		{"positional argument", []string{"walk"}, 2, `unexpected argument "walk"`},
		{"listen without a port", []string{"-listen", "localhost"}, 2, "-listen"},
		{"listen port out of range", []string{"-listen", ":70000"}, 2, "70000"},
		{"redis without a port", []string{"-redis", "127.0.0.1"}, 2, "host:port"},
		{"redis without a host", []string{"-redis", ":6379"}, 2, "host is missing"},
		{"redis empty", []string{"-redis", ""}, 2, "-redis"},
		{"redis with an empty seed", []string{"-redis", "127.0.0.1:7000,,127.0.0.1:7001"}, 2, "-redis"},
		{"password without redis", []string{"-redis-password", "x"}, 2, "-redis-password needs -redis"},
		{"timeout without redis", []string{"-redis-timeout", "1s"}, 2, "-redis-timeout needs -redis"},
		{"zero timeout", []string{"-redis", "127.0.0.1:6379", "-redis-timeout", "0s"}, 2, "-redis-timeout"},
		{"timeout not a duration", []string{"-redis", "127.0.0.1:6379", "-redis-timeout", "soon"}, 2, "redis-timeout"},
		{"help", []string{"-h"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if got := exitCode(err); got != tt.wantExit {
				t.Fatalf("exit code of run(%q) = %d (err %v), want %d", tt.args, got, err, tt.wantExit)
			}
			if tt.wantExit == 0 {
				if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "-listen host:port") {
					t.Errorf("-h: err %v, usage %q", err, stdout.String())
				}
				return
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, tt.wantMsg)
			}
			if stdout.String() != "" {
				t.Errorf("a bad command line started the demo:\n%s", stdout.String())
			}
		})
	}
}

// silentListener accepts connections and never answers, like a firewalled
// or hung server; it closes them at the end of the test.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRedisThatDoesNotAnswer(t *testing.T) {
	const password = "hunter2-redis-password"
	mr := miniredis.RunT(t)
	mr.RequireAuth("the-right-one")
	dead, dead2 := deadAddr(t), deadAddr(t)
	silent := silentListener(t)

	tests := []struct {
		name    string
		args    []string
		wantMsg []string
	}{
		{"connection refused", []string{"-redis", dead}, []string{"the Redis at " + dead + " does not answer", "connection refused"}},
		{"cluster seeds refused", []string{"-redis", dead + "," + dead2}, []string{"the Redis at " + dead + "," + dead2 + " does not answer"}},
		{"no reply", []string{"-redis", silent, "-redis-timeout", "200ms"}, []string{"the Redis at " + silent + " does not answer", "no reply within 200ms"}},
		{"wrong password", []string{"-redis", mr.Addr(), "-redis-password", password}, []string{"the Redis at " + mr.Addr() + " refused PING", "-redis-password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if exitCode(err) != 1 {
				t.Fatalf("run(%q) = %v (exit %d), want exit 1", tt.args, err, exitCode(err))
			}
			msg := err.Error()
			for _, w := range tt.wantMsg {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, password) {
				t.Errorf("error %q: want one line without the password", msg)
			}
			if stdout.String() != "" {
				t.Errorf("the demo started although Redis does not answer:\n%s", stdout.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"help", flag.ErrHelp, 0},
		{"usage", usagef("bad"), 2},
		{"wrapped usage", errors.Join(errors.New("x"), usagef("bad")), 2},
		{"failure", errors.New("redis down"), 1},
		{"deadline", context.DeadlineExceeded, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestCurlLines runs the curl lines the demo prints, as a reader would
// paste them, and checks what they print.
func TestCurlLines(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the printed lines need %s: %v", tool, err)
		}
	}
	_, out, _ := listening(t, "127.0.0.1:0")
	_, block, _ := strings.Cut(out.String(), "Try it with curl")
	block, _, _ = strings.Cut(block, "Press Ctrl-C")
	var script []string
	for line := range strings.Lines(block) {
		if cmd, ok := strings.CutPrefix(line, "  "); ok && !strings.HasPrefix(cmd, "#") {
			script = append(script, cmd)
		}
	}
	if len(script) < 9 {
		t.Fatalf("found %d curl lines in the start-up output:\n%s", len(script), out.String())
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", strings.Join(script, ""))
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the curl lines failed: %v\n%s\nscript:\n%s", err, got, strings.Join(script, ""))
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	want := []string{
		`^\{"openid":"o-alice","code":"c\+[^"]+","encryptedData":"[^"]+","iv":"[^"]+","phoneCode":"p\+[^"]+"\}$`, // 1. /dev/code
		`^o-alice\|demo\|[A-Z2-7]{26}$`, // 2. TOKEN
		`^\{"openid":"o-alice"\}$`,      // 3. /me
		`^o-alice\|demo\|[A-Z2-7]{26}$`, // 4. NEW
		`^\{"status_code":6007,"status_message":"invalid access token","response":""\}$`, //    /me, old token
		`^\{"openid":"o-alice"\}$`,                                                             //    /me, new token
		`^\{"status_code":1,"status_message":"OK","response":""\}$`,                            // 5. /logout
		`^\{"status_code":6007,"status_message":"invalid access token","response":""\}$`,       //    /me, logged out
		`^\{"status_code":1,"status_message":"OK","response":"o-bob\|demo\|[A-Z2-7]{26}"\}$`,   // 6. code-only login
		`^\{"status_code":1,"status_message":"OK","response":"o-carol\|demo\|[A-Z2-7]{26}"\}$`, // 7. phone login
		`^\{"status_code":1,"status_message":"OK","response":"[^"|]+\|demo\|[A-Z2-7]{26}"\}$`,  // 8. official account
		`^\{"Logins":\{"1":\d+\},"Checks":\d+,.*"PlatformCalls":\d+,`,                          // 9. /debug/stats
	}
	if len(lines) != len(want) {
		t.Fatalf("the curl lines printed %d lines, want %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %s", i+1, lines[i], w)
		}
	}
	if lines[1] == lines[3] {
		t.Errorf("/refresh printed the old token again: %s", lines[3])
	}
}

func TestListenProblems(t *testing.T) {
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var stdout, stderr syncBuffer
		err = run(t.Context(), []string{"-listen", ln.Addr().String()}, &stdout, &stderr)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "cannot listen on "+ln.Addr().String()) ||
			!strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("run = %v (exit %d), want exit 1 saying the address is in use", err, exitCode(err))
		}
		if stdout.String() != "" {
			t.Errorf("the demo started although it cannot listen:\n%s", stdout.String())
		}
	})
	t.Run("all interfaces", func(t *testing.T) {
		_, out, stop := listening(t, ":0")
		if !strings.Contains(out.String(), "WARNING: ") || !strings.Contains(out.String(), "-listen 127.0.0.1:PORT") {
			t.Errorf("listening on all interfaces printed no warning:\n%s", out.String())
		}
		if err := stop(); err != nil {
			t.Errorf("run after cancel = %v", err)
		}
	})
}
