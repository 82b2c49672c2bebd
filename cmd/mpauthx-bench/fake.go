package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// maxFakeUsers caps the users one request to the fake's /users may ask
// for.
const maxFakeUsers = 1_000_000

// fakeInfo is the JSON line serveFake prints when it is ready.
type fakeInfo struct {
	// APIBase is the fake WeChat's base URL: code2session is
	// APIBase + "/sns/jscode2session".
	APIBase string `json:"api_base"`
	AppID   string `json:"appid"`
	Secret  string `json:"secret"`
	// UsersURL hands out users: GET UsersURL?n=N registers N new users
	// and answers fakeUsers.
	UsersURL string `json:"users_url"`
}

// fakeUser is one user of fakeUsers: the openid, and what the mini
// program sends for one login (a fresh code and the encrypted profile).
type fakeUser struct {
	OpenID        string `json:"openid"`
	Code          string `json:"code"`
	EncryptedData string `json:"encryptedData"`
	IV            string `json:"iv"`
}

// fakeUsers is the answer of UsersURL.
type fakeUsers struct {
	Users []fakeUser `json:"users"`
}

// serveFake serves the fake WeChat of the logins phase (the same
// mpauthxtest server, app and users as run's) on loopback for another
// program, the Node.js harness of bench/node-login, so that both sides
// log in against the same fake. It prints a fakeInfo line on stdout, then
// serves until stdin reaches its end (the harness closes it, or exits) or
// ctx ends.
func serveFake(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	wx := mpauthxtest.NewServer(benchAppID, "bench-secret-"+rand.Text())
	defer wx.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > maxFakeUsers {
			http.Error(w, fmt.Sprintf("n must be 1 to %d", maxFakeUsers), http.StatusBadRequest)
			return
		}
		var out fakeUsers
		for _, u := range newUsers(wx, n) {
			out.Users = append(out.Users, fakeUser{OpenID: u.openID, Code: u.code, EncryptedData: u.data, IV: u.iv})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer srv.Close()

	info, err := json.Marshal(fakeInfo{APIBase: wx.URL, AppID: wx.AppID, Secret: wx.AppSecret, UsersURL: "http://" + ln.Addr().String() + "/users"})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", info); err != nil {
		return err
	}
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// fakeWeChat is the fake WeChat a run logs in against: an mpauthxtest
// server in this process, or one in a child process (-fake-process).
type fakeWeChat struct {
	appID, secret, apiBase string
	// newUsers registers n new users and prepares one login each.
	newUsers func(n int) ([]user, error)
	close    func()
}

// inProcessFake starts the fake WeChat in this process.
func inProcessFake() *fakeWeChat {
	wx := mpauthxtest.NewServer(benchAppID, "bench-secret-"+rand.Text())
	return &fakeWeChat{
		appID: wx.AppID, secret: wx.AppSecret, apiBase: wx.URL,
		newUsers: func(n int) ([]user, error) { return newUsers(wx, n), nil },
		close:    wx.Close,
	}
}

// startFakeProcess runs this command with -fake-wechat in a child process,
// as bench/node-login does, and returns its fake WeChat.
func startFakeProcess(ctx context.Context) (*fakeWeChat, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-fake-wechat")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		stdin.Close() // serveFake returns at the end of its stdin
		cmd.Wait()
	}
	var info fakeInfo
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &info)
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("the fake WeChat's process: %w", err)
	}
	return &fakeWeChat{
		appID: info.AppID, secret: info.Secret, apiBase: info.APIBase,
		newUsers: func(n int) ([]user, error) { return fetchUsers(ctx, info.UsersURL, n) },
		close:    stop,
	}, nil
}

// fetchUsers asks the fake WeChat's process for n new users.
func fetchUsers(ctx context.Context, usersURL string, n int) ([]user, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, usersURL+"?n="+strconv.Itoa(n), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the fake WeChat's users: HTTP %d", resp.StatusCode)
	}
	var got fakeUsers
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return nil, err
	}
	if len(got.Users) != n {
		return nil, fmt.Errorf("the fake WeChat gave %d users, want %d", len(got.Users), n)
	}
	users := make([]user, n)
	for i, u := range got.Users {
		users[i] = user{openID: u.OpenID, code: u.Code, data: u.EncryptedData, iv: u.IV, revoke: i%badEvery == 1}
	}
	return users, nil
}
