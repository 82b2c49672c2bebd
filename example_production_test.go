package mpauthx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// CallAPI calls a WeChat server API with the app's access token; here
// the content check msg_sec_check, which the fake WeChat answers through
// HandleAPI. A rejected token would be renewed and the call sent once
// more.
func ExampleClient_CallAPI() {
	c, wx, done := exampleClient()
	defer done()
	wx.HandleAPI("/wxa/msg_sec_check", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"errcode":0,"errmsg":"ok","result":{"suggest":"risky","label":20001}}`)
	})

	var reply struct {
		Result struct {
			Suggest string `json:"suggest"`
			Label   int    `json:"label"`
		} `json:"result"`
	}
	err := c.CallAPI(context.Background(), http.MethodPost, "/wxa/msg_sec_check",
		map[string]any{"content": "...", "version": 2, "scene": 2, "openid": "o-alice"}, &reply)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.Result.Suggest, reply.Result.Label)

	// An errcode is a *WeChatError inside a StatusHTTPError.
	wx.HandleAPI("/wxa/msg_sec_check", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"errcode":44004,"errmsg":"empty content"}`)
	})
	err = c.CallAPI(context.Background(), http.MethodPost, "/wxa/msg_sec_check", map[string]any{"content": ""}, &reply)
	var we *mpauthx.WeChatError
	fmt.Println(mpauthx.Code(err), errors.As(err, &we) && we.ErrCode == 44004, mpauthx.HTTPStatus(err))
	// Output:
	// risky 20001
	// 6002 true 502
}

// HTTPStatus picks the HTTP status of a handler's reply from the error
// of a Client call: here a login code that WeChat does not know, which
// the mini program must renew with wx.login.
func ExampleHTTPStatus() {
	c, _, done := exampleClient()
	defer done()
	res, err := c.AuthorizeCode(context.Background(), "a-code-wechat-never-gave")
	fmt.Println(mpauthx.HTTPStatus(err), res.StatusCode)
	fmt.Println(mpauthx.HTTPStatus(nil))
	// Output:
	// 401 6008
	// 200
}

// Stats counts logins by outcome, token checks and calls to WeChat.
func ExampleClient_Stats() {
	c, wx, done := exampleClient()
	defer done()
	wx.AddUser(mpauthxtest.User{OpenID: "o-alice"})
	res, err := c.AuthorizeCode(context.Background(), wx.Code("o-alice"))
	if err != nil {
		log.Fatal(err)
	}
	c.AuthorizeCode(context.Background(), "used-or-unknown")
	c.IsTokenValid(context.Background(), res.Response)

	st := c.Stats()
	fmt.Println("logins:", st.Logins[mpauthx.StatusSuccess], "ok,", st.Logins[mpauthx.StatusSessionKeyRequestError], "refused by WeChat")
	fmt.Println("checks:", st.Checks, "calls to WeChat:", st.PlatformCalls, "failed:", st.PlatformErrors)
	// Output:
	// logins: 1 ok, 1 refused by WeChat
	// checks: 1 calls to WeChat: 2 failed: 1
}
