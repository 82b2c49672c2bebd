package mpauthxtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

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
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		fmt.Printf("errcode=%d openid=%q\n", r.ErrCode, r.OpenID)
	}
	fmt.Println(srv.Requests(), "requests")
	// Output:
	// errcode=45011 openid=""
	// errcode=0 openid="o1"
	// 2 requests
}
