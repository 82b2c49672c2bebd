package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
