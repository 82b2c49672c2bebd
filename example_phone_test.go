package mpauthx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// phoneLoginHandler is a phone-number login handler as a backend would
// write it: the mini program POSTs {"code": wx.login's code, "phoneCode":
// the getPhoneNumber button's code} and gets mpauthx's Result as JSON.
func phoneLoginHandler(c *mpauthx.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Code      string `json:"code"`
			PhoneCode string `json:"phoneCode"`
		}
		var res mpauthx.Result
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req)
		if err != nil {
			err = &mpauthx.Error{Code: mpauthx.StatusRequiredParamsMissing, Message: "body is not JSON", Err: err}
			res = mpauthx.ErrorResult(err)
		} else {
			res, err = c.AuthorizePhone(r.Context(), req.Code, req.PhoneCode)
		}
		status := http.StatusOK
		var we *mpauthx.WeChatError
		switch {
		case err == nil:
		case mpauthx.Code(err) == mpauthx.StatusRequiredParamsMissing:
			status = http.StatusBadRequest
		case errors.As(err, &we) && (we.ErrCode == mpauthx.ErrCodeInvalidCode || we.ErrCode == mpauthx.ErrCodeCodeUsed):
			status = http.StatusUnauthorized // a stale or replayed code: ask the user again
		case mpauthx.Code(err) == mpauthx.StatusDatabaseError:
			status = http.StatusServiceUnavailable
		default:
			status = http.StatusBadGateway
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(res); err != nil { // on failure res is mpauthx.ErrorResult(err)
			log.Print(err) // the client went away
		}
	})
}

// Example_phoneLoginHandler tests a phone-number login handler against the
// fake WeChat: the login, the phone number on the user's row, a replayed
// phone code, a missing one, and an access token WeChat ended (renewed
// once, unseen by the caller).
func Example_phoneLoginHandler() {
	c, wx, done := exampleClient()
	defer done()
	h := phoneLoginHandler(c)
	wx.AddUser(mpauthxtest.User{OpenID: "o-alice", Phone: "13800138000"})

	post := func(body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login/phone", strings.NewReader(body)))
		var res mpauthx.Result
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			fmt.Printf("HTTP %d, not a Result: %v\n", rec.Code, err)
			return
		}
		fmt.Printf("HTTP %d, %d %s\n", rec.Code, res.StatusCode, res.StatusMessage)
	}
	phoneCode := wx.PhoneCode("o-alice")
	post(`{"code":"` + wx.Code("o-alice") + `","phoneCode":"` + phoneCode + `"}`)
	u, err := c.User(context.Background(), "o-alice")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("phone on the user's row:", u.Phone)
	post(`{"code":"` + wx.Code("o-alice") + `","phoneCode":"` + phoneCode + `"}`) // the phone code is single-use
	post(`{"code":"` + wx.Code("o-alice") + `"}`)
	wx.ExpireAccessToken()
	post(`{"code":"` + wx.Code("o-alice") + `","phoneCode":"` + wx.PhoneCode("o-alice") + `"}`)
	fmt.Println("stable_token calls:", wx.AccessTokenRequests())
	// Output:
	// HTTP 200, 1 OK
	// phone on the user's row: 13800138000
	// HTTP 401, 6013 phone number error: getuserphonenumber: errcode 40029 (invalid code)
	// HTTP 400, 6001 phoneCode is required
	// HTTP 200, 1 OK
	// stable_token calls: 2
}

// ExampleClient_AuthorizePhone logs a user in with the two codes the mini
// program sends together: wx.login's and the getPhoneNumber button's.
func ExampleClient_AuthorizePhone() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()
	wx.AddUser(mpauthxtest.User{OpenID: "o-dave", Phone: "13800138000"})

	res, err := c.AuthorizePhone(ctx, wx.Code("o-dave"), wx.PhoneCode("o-dave"))
	if err != nil {
		fmt.Println("login failed:", mpauthx.ErrorResult(err).StatusMessage)
		return
	}
	userID := c.ExtractOpenID(res.Response)
	u, err := c.User(ctx, userID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(userID, u.Phone)

	// The same user logging in with wx.login alone gets the same token.
	again, err := c.AuthorizeCode(ctx, wx.Code("o-dave"))
	fmt.Println(again.Response == res.Response, err)

	// A 6001 names the field the mini program left empty.
	_, err = c.AuthorizePhone(ctx, "", wx.PhoneCode("o-dave"))
	fmt.Println(mpauthx.Code(err), mpauthx.ErrorResult(err).StatusMessage)
	// Output:
	// o-dave 13800138000
	// true <nil>
	// 6001 code is required
}

// ExampleClient_PhoneNumberOf exchanges a phone code for a user who is
// logged in already: WeChat checks that the code is theirs.
func ExampleClient_PhoneNumberOf() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()
	wx.AddUser(mpauthxtest.User{OpenID: "o-erin", Phone: "13800138000"})
	wx.AddUser(mpauthxtest.User{OpenID: "o-frank", Phone: "13900139000"})
	if _, err := c.AuthorizeCode(ctx, wx.Code("o-erin")); err != nil {
		log.Fatal(err)
	}

	// Behind the Middleware, the user ID is mpauthx.OpenIDFromContext's.
	p, err := c.PhoneNumberOf(ctx, "o-erin", wx.PhoneCode("o-erin"))
	fmt.Println(p.PurePhoneNumber, err)

	// Another user's phone code, sent in erin's session, is refused.
	_, err = c.PhoneNumberOf(ctx, "o-erin", wx.PhoneCode("o-frank"))
	var we *mpauthx.WeChatError
	fmt.Println(mpauthx.Code(err), errors.As(err, &we) && we.ErrCode == mpauthx.ErrCodeInvalidOpenID)
	// Output:
	// 13800138000 <nil>
	// 6013 true
}

func ExampleClient_PhoneNumber() {
	c, wx, done := exampleClient()
	defer done()
	wx.AddUser(mpauthxtest.User{OpenID: "o-bob", Phone: "2025550123", CountryCode: "1"})

	p, err := c.PhoneNumber(context.Background(), wx.PhoneCode("o-bob"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.PhoneNumber, p.PurePhoneNumber, p.CountryCode)
	// Output: +12025550123 2025550123 1
}

// ExampleClient_AccessToken calls another WeChat server API with the
// app's access token, renewing it when WeChat rejects it.
func ExampleClient_AccessToken() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()

	// callAPI stands for any WeChat server API; it returns the errcode.
	callAPI := func(token string) int {
		if token != wx.AccessToken() {
			return mpauthx.ErrCodeInvalidAccessToken
		}
		return 0
	}
	token, err := c.AccessToken(ctx) // from memory after the first call
	if err != nil {
		log.Fatal(err)
	}
	wx.ExpireAccessToken()
	errcode := callAPI(token)
	fmt.Println("first try: errcode", errcode)
	if errcode == mpauthx.ErrCodeInvalidAccessToken || errcode == mpauthx.ErrCodeAccessTokenExpired || errcode == mpauthx.ErrCodeMalformedAccessToken {
		// One renewal for every caller and instance that saw the
		// same token fail (forced only if WeChat hands it out again).
		if token, err = c.RenewAccessToken(ctx, token); err != nil {
			log.Fatal(err)
		}
		errcode = callAPI(token)
	}
	fmt.Println("retry: errcode", errcode)
	// Output:
	// first try: errcode 40001
	// retry: errcode 0
}

func ExampleClient_Decrypt() {
	c, wx, done := exampleClient()
	defer done()
	ctx := context.Background()
	wx.AddUser(mpauthxtest.User{OpenID: "o-carol"})
	if _, err := c.AuthorizeCode(ctx, wx.Code("o-carol")); err != nil {
		log.Fatal(err)
	}

	// What wx.getWeRunData gives the mini program after that login.
	data, iv := wx.EncryptFor("o-carol", []byte(`{"stepInfoList":[{"timestamp":1700000000,"step":8848}],"watermark":{"timestamp":1700000000,"appid":"`+wx.AppID+`"}}`))
	plain, err := c.Decrypt(ctx, "o-carol", data, iv)
	if err != nil {
		log.Fatal(err)
	}
	var run struct {
		StepInfoList []struct{ Step int } `json:"stepInfoList"`
	}
	if err := json.Unmarshal(plain, &run); err != nil || len(run.StepInfoList) == 0 {
		log.Fatalf("not WeRun data: %v", err)
	}
	fmt.Println("steps:", run.StepInfoList[0].Step)
	ok, err := c.CheckSessionKey(ctx, "o-carol")
	fmt.Println("session key current:", ok, err)
	// Output:
	// steps: 8848
	// session key current: true <nil>
}
