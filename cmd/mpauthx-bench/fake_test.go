package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestMain lets the test binary stand in for the command when a test runs
// it with -fake-wechat (-fake-process runs os.Executable()).
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "-fake-wechat" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestRunFakeProcess runs the benchmark with its fake WeChat in a child
// process, as bench/node-login uses it: every login succeeds with the
// users the child hands out.
func TestRunFakeProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-users", "20", "-prefill", "0", "-concurrency", "4", "-seconds", "0.1", "-fake-process"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, &stderr)
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Logins.Count != 20 || rep.Logins.Failures+rep.Logins.Wrong != 0 || rep.Checks.Wrong != 0 || rep.BadChecks == 0 {
		t.Errorf("logins %+v, checks %+v, %d bad checks: want 20 logins, no failure or wrong answer", rep.Logins, rep.Checks, rep.BadChecks)
	}
	if strings.Contains(stderr.String(), "PASS") {
		t.Errorf("the child ran the tests instead of the fake WeChat:\n%s", &stderr)
	}
}

// TestServeFake runs the fake WeChat of -fake-wechat as the Node harness
// does: it reads the line serveFake prints, asks for users, logs one in
// through code2session and decrypts its profile, and ends serveFake by
// closing its stdin.
func TestServeFake(t *testing.T) {
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveFake(context.Background(), stdinR, stdoutW) }()

	line, err := bufio.NewReader(stdoutR).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var info fakeInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if info.AppID != benchAppID || info.Secret == "" || info.APIBase == "" || info.UsersURL == "" {
		t.Fatalf("info = %+v", info)
	}

	for _, bad := range []string{"", "0", "-1", "x", "1000001"} {
		resp, err := http.Get(info.UsersURL + "?n=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("n=%q: HTTP %d, want 400", bad, resp.StatusCode)
		}
	}
	resp, err := http.Get(info.UsersURL + "?n=3")
	if err != nil {
		t.Fatal(err)
	}
	var got fakeUsers
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || len(got.Users) != 3 {
		t.Fatalf("users: %v, %d users, want 3", err, len(got.Users))
	}

	// The first user logs in as the Node harness does.
	u := got.Users[0]
	q := url.Values{"appid": {info.AppID}, "secret": {info.Secret}, "js_code": {u.Code}, "grant_type": {"authorization_code"}}
	resp, err = http.Get(info.APIBase + mpauthxtest.Code2SessionPath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var sess struct {
		OpenID     string `json:"openid"`
		SessionKey string `json:"session_key"`
	}
	err = json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	if err != nil || sess.OpenID != u.OpenID {
		t.Fatalf("code2session: %v, openid %q, want %q", err, sess.OpenID, u.OpenID)
	}
	profile, err := mpauthx.DecryptUserInfo(info.AppID, sess.SessionKey, u.EncryptedData, u.IV)
	if err != nil || profile.OpenID != u.OpenID {
		t.Fatalf("DecryptUserInfo: %v, %+v", err, profile)
	}

	stdinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveFake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveFake did not return after its stdin closed")
	}
	if _, err := http.Get(info.UsersURL + "?n=1"); err == nil {
		t.Error("the users endpoint still answers after serveFake returned")
	}
}
