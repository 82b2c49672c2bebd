package mpauthx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// exampleClient returns a Client wired to a fake WeChat, an in-process
// Redis and a temporary SQLite file, and a function that releases them all.
// In a test, use miniredis.RunT(t) and t.TempDir() instead.
func exampleClient() (*mpauthx.Client, *mpauthxtest.Server, func()) {
	wx := mpauthxtest.NewServer("wx-example", "example-secret")
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	dir, err := os.MkdirTemp("", "mpauthx-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := mpauthx.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	c, err := mpauthx.New(mpauthx.Config{
		AppID:     wx.AppID,
		AppSecret: wx.AppSecret,
		Sku:       "vip",
		Redis:     rdb,
		DB:        db,
		APIBase:   wx.URL,
	})
	if err != nil {
		log.Fatal(err)
	}
	return c, wx, func() {
		if err := errors.Join(c.Close(), db.Close(), rdb.Close()); err != nil {
			log.Print(err)
		}
		mr.Close()
		wx.Close()
		if err := os.RemoveAll(dir); err != nil {
			log.Print(err)
		}
	}
}

func ExampleNew() {
	dir, err := os.MkdirTemp("", "mpauthx-example")
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
		AppID:     "wx4f4bc4dec97d474b",
		AppSecret: "read-it-from-the-environment",
		Sku:       "vip",
		RedisAddr: "127.0.0.1:6379", // New dials it but does not connect yet
		DB:        db,
	})
	if err != nil {
		log.Fatal(err) // a plain error naming the bad field
	}
	defer c.Close()
	fmt.Println(c) // the secret is left out
	// Output: mpauthx.Client{AppID:"wx4f4bc4dec97d474b" Sku:"vip" TokenTTL:72h0m0s}
}

func ExampleClient_Authorize() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	// What the mini program sends after wx.login and wx.getUserInfo.
	u := wx.AddUser(mpauthxtest.User{OpenID: "oGZUI0egBJY1zhBYw2KhdUfwVJJE", NickName: "Band"})
	code := wx.Code(u.OpenID)
	encryptedData, iv := wx.UserInfo(u.OpenID)

	res, err := c.Authorize(ctx, code, encryptedData, iv)
	if err != nil {
		fmt.Println("login failed:", mpauthx.Code(err))
		return
	}
	fmt.Println(res.StatusCode, res.StatusMessage, c.ExtractOpenID(res.Response))

	// A code is single-use: WeChat answers errcode 40163, inside a 6008.
	res, err = c.Authorize(ctx, code, encryptedData, iv)
	var we *mpauthx.WeChatError
	if errors.As(err, &we) {
		fmt.Println(res.StatusCode, "errcode", we.ErrCode)
	}
	// Output:
	// 1 OK oGZUI0egBJY1zhBYw2KhdUfwVJJE
	// 6008 errcode 40163
}

func ExampleClient_AuthorizeCode() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	// Most mini programs send only the code of wx.login.
	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	res, err := c.AuthorizeCode(ctx, wx.Code("o-alice"))
	if err != nil {
		fmt.Println("login failed:", mpauthx.ErrorResult(err).StatusMessage)
		return
	}
	fmt.Println(c.ExtractOpenID(res.Response), c.ExtractSku(res.Response))

	// A second login, from another device, gets the same token.
	again, err := c.AuthorizeCode(ctx, wx.Code("o-alice"))
	if err != nil {
		fmt.Println("login failed:", mpauthx.ErrorResult(err).StatusMessage)
		return
	}
	fmt.Println(again.Response == res.Response)

	// Failures come as an error and a Result ready to send.
	res, err = c.AuthorizeCode(ctx, "")
	fmt.Println(mpauthx.Code(err), res.StatusMessage)
	// Output:
	// o-alice vip
	// true
	// 6001 code is required
}

func ExampleClient_IsTokenValid() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	res, err := c.AuthorizeCode(ctx, wx.Code("o-alice"))
	if err != nil {
		log.Fatal(err)
	}
	token := res.Response

	for _, tok := range []string{token, "o-alice|vip|FORGED", "not a token"} {
		ok, err := c.IsTokenValid(ctx, tok)
		if err != nil { // Redis could not answer: neither yes nor no
			fmt.Println("cannot check:", mpauthx.Code(err))
			return
		}
		fmt.Println(ok)
	}

	if err := c.RevokeToken(ctx, token); err != nil {
		log.Fatal(err)
	}
	ok, err := c.IsTokenValid(ctx, token)
	fmt.Println("after RevokeToken:", ok, err)
	// Output:
	// true
	// false
	// false
	// after RevokeToken: false <nil>
}

func ExampleClient_RefreshToken() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	old, err := c.AuthorizeCode(ctx, wx.Code("o-alice"))
	if err != nil {
		log.Fatal(err)
	}

	// Pass only a user ID the server has authenticated (see the Middleware).
	res, err := c.RefreshToken(ctx, c.ExtractOpenID(old.Response))
	if err != nil {
		log.Fatal(err)
	}
	for _, tok := range []string{old.Response, res.Response} {
		ok, err := c.IsTokenValid(ctx, tok)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ok)
	}

	_, err = c.RefreshToken(ctx, "o-nobody")
	fmt.Println(mpauthx.Code(err))
	// Output:
	// false
	// true
	// 6010
}

func ExampleClient_Middleware() {
	c, wx, done := exampleClient()
	defer done()

	// A protected handler: the Middleware runs it only for a live token.
	me := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, ok := mpauthx.OpenIDFromContext(r.Context())
		if !ok { // not behind the Middleware
			http.Error(w, "no user", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(map[string]string{"user": userID}); err != nil {
			log.Print(err)
		}
	}))

	wx.AddUser(mpauthxtest.User{OpenID: "o-bob"})
	res, err := c.AuthorizeCode(context.Background(), wx.Code("o-bob"))
	if err != nil {
		log.Fatal(err)
	}

	for _, auth := range []string{"Bearer " + res.Response, "bearer " + res.Response, "Bearer forged", ""} {
		req := httptest.NewRequest("GET", "/me", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		me.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 {"user":"o-bob"}
	// 200 {"user":"o-bob"}
	// 401 {"status_code":6007,"status_message":"invalid access token","response":""}
	// 401 {"status_code":6007,"status_message":"invalid access token","response":""}
}

func ExampleErrorResult() {
	c, _, done := exampleClient()
	defer done()

	_, err := c.AuthorizeCode(context.Background(), "")
	reply, err2 := json.Marshal(mpauthx.ErrorResult(err))
	if err2 != nil {
		log.Fatal(err2)
	}
	fmt.Println(string(reply))
	// Output: {"status_code":6001,"status_message":"code is required","response":""}
}

func ExampleCode() {
	c, wx, done := exampleClient()
	defer done()

	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	wx.FailNext(1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeRateLimited})
	_, err := c.AuthorizeCode(context.Background(), wx.Code("o-alice"))

	var we *mpauthx.WeChatError
	switch {
	case err == nil:
		fmt.Println("logged in")
	case errors.As(err, &we) && we.ErrCode == mpauthx.ErrCodeRateLimited:
		fmt.Println(mpauthx.Code(err), "rate limited: try again later")
	case mpauthx.Code(err) == mpauthx.StatusDatabaseError:
		fmt.Println("Redis or SQL is down")
	default:
		fmt.Println(mpauthx.Code(err))
	}
	// Output: 6008 rate limited: try again later
}
