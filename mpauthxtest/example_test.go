package mpauthxtest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// loginHandler is the code under test in Example_loginHandler: a login
// handler as a backend would write it, answering POST {"code": "..."} with
// mpauthx's Result as JSON.
func loginHandler(c *mpauthx.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Code string `json:"code"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, mpauthx.Result{
				StatusCode: mpauthx.StatusRequiredParamsMissing, StatusMessage: "body is not JSON"})
			return
		}
		res, err := c.AuthorizeCode(r.Context(), req.Code)
		status := http.StatusOK
		var we *mpauthx.WeChatError
		switch {
		case err == nil:
		case errors.As(err, &we) && (we.ErrCode == mpauthx.ErrCodeInvalidCode || we.ErrCode == mpauthx.ErrCodeCodeUsed):
			status = http.StatusUnauthorized
		case mpauthx.Code(err) == mpauthx.StatusRequiredParamsMissing:
			status = http.StatusBadRequest
		case mpauthx.Code(err) == mpauthx.StatusDatabaseError:
			status = http.StatusServiceUnavailable
		default:
			status = http.StatusBadGateway
		}
		writeJSON(w, status, res) // on failure res is mpauthx.ErrorResult(err)
	})
}

// writeJSON sends v as JSON with the HTTP status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Print(err) // the client went away
	}
}

// Example_loginHandler tests a login handler end to end: the fake WeChat,
// an in-process Redis (miniredis) and a temporary SQLite file. In a test
// function, use miniredis.RunT(t) and t.TempDir() instead.
func Example_loginHandler() {
	wx := mpauthxtest.NewServer("wx-test-app", "test-secret")
	defer wx.Close()
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	dir, err := os.MkdirTemp("", "login-test")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := mpauthx.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c, err := mpauthx.New(mpauthx.Config{
		AppID: wx.AppID, AppSecret: wx.AppSecret, APIBase: wx.URL,
		Sku: "test", Redis: rdb, DB: db,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	h := loginHandler(c)

	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	code := wx.Code("o-alice")
	post := func(body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", strings.NewReader(body)))
		var res mpauthx.Result
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			fmt.Printf("HTTP %d, not a Result: %v\n", rec.Code, err)
			return
		}
		tok := "no token"
		if id := c.ExtractOpenID(res.Response); id != "" {
			tok = "a token of " + id
		}
		fmt.Printf("HTTP %d, %d %s (%s)\n", rec.Code, res.StatusCode, res.StatusMessage, tok)
	}
	post(`{"code":"` + code + `"}`) // logs o-alice in
	post(`{"code":"` + code + `"}`) // the code is single-use
	post(`{}`)                      // no code
	post(`not JSON`)                // a bad body
	wx.FailNext(1, mpauthxtest.Fault{ErrCode: 45011})
	post(`{"code":"` + wx.Code("o-alice") + `"}`) // WeChat rate-limits the app
	wx.FailNext(1, mpauthxtest.Fault{Status: http.StatusInternalServerError})
	post(`{"code":"` + wx.Code("o-alice") + `"}`) // WeChat is down
	// Output:
	// HTTP 200, 1 OK (a token of o-alice)
	// HTTP 401, 6008 session key request error: errcode 40163 (code already used) (no token)
	// HTTP 400, 6001 code is required (no token)
	// HTTP 400, 6001 body is not JSON (no token)
	// HTTP 502, 6008 session key request error: errcode 45011 (rate limited by WeChat) (no token)
	// HTTP 502, 6008 session key request error: WeChat answered HTTP 500 (no token)
}

func Example() {
	srv := mpauthxtest.NewServer("wxappid", "secret")
	defer srv.Close()

	u := srv.AddUser(mpauthxtest.User{OpenID: "oGZUI0egBJY1zhBYw2KhdUfwVJJE", NickName: "Band"})
	code := srv.Code(u.OpenID)

	q := url.Values{
		"appid":      {srv.AppID},
		"secret":     {srv.AppSecret},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}
	resp, err := http.Get(srv.URL + "/sns/jscode2session?" + q.Encode())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()

	var session struct {
		OpenID     string `json:"openid"`
		SessionKey string `json:"session_key"`
		ErrCode    int    `json:"errcode"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&session); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Println(session.OpenID, session.ErrCode)
	fmt.Println(session.SessionKey == u.SessionKey)
	// Output:
	// text/plain
	// oGZUI0egBJY1zhBYw2KhdUfwVJJE 0
	// true
}

func ExampleServer_FailNext() {
	srv := mpauthxtest.NewServer("wxappid", "secret")
	defer srv.Close()
	srv.AddUser(mpauthxtest.User{OpenID: "o1"})
	srv.FailNext(1, mpauthxtest.Fault{ErrCode: 45011})

	for range 2 {
		q := url.Values{
			"appid":      {srv.AppID},
			"secret":     {srv.AppSecret},
			"js_code":    {srv.Code("o1")},
			"grant_type": {"authorization_code"},
		}
		resp, err := http.Get(srv.URL + "/sns/jscode2session?" + q.Encode())
		if err != nil {
			fmt.Println(err)
			return
		}
		var r struct {
			OpenID  string `json:"openid"`
			ErrCode int    `json:"errcode"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("errcode=%d openid=%q\n", r.ErrCode, r.OpenID)
	}
	fmt.Println(srv.Requests(), "requests")
	// Output:
	// errcode=45011 openid=""
	// errcode=0 openid="o1"
	// 2 requests
}
