package mpauthx_test

import (
	"context"
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
		c.Close()
		db.Close()
		rdb.Close()
		mr.Close()
		wx.Close()
		os.RemoveAll(dir)
	}
}

func ExampleNew() {
	db, err := mpauthx.OpenSQLite(filepath.Join(os.TempDir(), "mpauthx-example-new.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c, err := mpauthx.New(mpauthx.Config{
		AppID:     "wx4f4bc4dec97d474b",
		AppSecret: os.Getenv("WECHAT_APP_SECRET") + "placeholder",
		Sku:       "vip",
		RedisAddr: "127.0.0.1:6379", // New does not connect yet
		DB:        db,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(c.ExtractSku("oGZUI0egBJY1zhBYw2KhdUfwVJJE|vip|session"))
	// Output: vip
}

func ExampleClient_Authorize() {
	c, wx, done := exampleClient()
	defer done()

	// What a mini program sends after wx.login and wx.getUserInfo.
	u := wx.AddUser(mpauthxtest.User{OpenID: "oGZUI0egBJY1zhBYw2KhdUfwVJJE", NickName: "Band"})
	code := wx.Code(u.OpenID)
	encryptedData, iv := wx.UserInfo(u.OpenID)

	res, err := c.Authorize(context.Background(), code, encryptedData, iv)
	if err != nil {
		fmt.Println("login failed:", mpauthx.Code(err))
		return
	}
	fmt.Println(res.StatusCode, res.StatusMessage, c.ExtractOpenID(res.Response))

	// The same code cannot be used twice: WeChat answers errcode 40163.
	res, _ = c.Authorize(context.Background(), code, encryptedData, iv)
	fmt.Println(res.StatusCode, res.StatusMessage)
	// Output:
	// 1 OK oGZUI0egBJY1zhBYw2KhdUfwVJJE
	// 6008 session key request error: errcode 40163 (code already used)
}

func ExampleClient_IsTokenValid() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	u := wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	res, _ := c.AuthorizeCode(ctx, wx.Code(u.OpenID))

	ok, err := c.IsTokenValid(ctx, res.Response)
	fmt.Println(ok, err)

	c.RevokeToken(ctx, res.Response)
	ok, err = c.IsTokenValid(ctx, res.Response)
	fmt.Println(ok, err)

	ok, err = c.IsTokenValid(ctx, "not a token")
	fmt.Println(ok, err)
	// Output:
	// true <nil>
	// false <nil>
	// false <nil>
}

func ExampleClient_Middleware() {
	c, wx, done := exampleClient()
	defer done()

	me := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, _ := mpauthx.OpenIDFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", userID)
	}))

	u := wx.AddUser(mpauthxtest.User{OpenID: "o-bob"})
	res, _ := c.AuthorizeCode(context.Background(), wx.Code(u.OpenID))

	for _, auth := range []string{"Bearer " + res.Response, "Bearer forged"} {
		req := httptest.NewRequest("GET", "/me", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		me.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body.String())
	}
	// Output:
	// 200 hello o-bob
	// 401 {"status_code":6007,"status_message":"invalid access token","response":""}
}

func ExampleErrorResult() {
	c, _, done := exampleClient()
	defer done()

	_, err := c.AuthorizeCode(context.Background(), "")
	fmt.Printf("%+v\n", mpauthx.ErrorResult(err))
	// Output: {StatusCode:6001 StatusMessage:code is required Response:}
}
