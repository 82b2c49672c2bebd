package mpauthx_test

import (
	"errors"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestPhoneNumberWatermarkRequired: a getuserphonenumber reply whose
// watermark names no app is refused exactly like one naming another app.
func TestPhoneNumberWatermarkRequired(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		reply := func(watermark string) []byte {
			return []byte(`{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86"` + watermark + `}}`)
		}
		e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{Body: reply(`,"watermark":{"timestamp":1,"appid":"wx-other-app"}`)})
		_, wrongApp := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
		if mpauthx.Code(wrongApp) != mpauthx.StatusPhoneNumberError {
			t.Fatalf("PhoneNumber with another app's watermark = %v, want 6013", wrongApp)
		}
		for name, watermark := range map[string]string{
			"no watermark":   ``,
			"null watermark": `,"watermark":null`,
			"no appid":       `,"watermark":{"timestamp":1}`,
			"empty appid":    `,"watermark":{"timestamp":1,"appid":""}`,
			"appid null":     `,"watermark":{"timestamp":1,"appid":null}`,
		} {
			t.Run(name, func(t *testing.T) {
				e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{Body: reply(watermark)})
				p, err := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
				if err == nil || p != (mpauthx.Phone{}) || err.Error() != wrongApp.Error() {
					t.Fatalf("PhoneNumber = %+v, %v; want the error of another app's watermark: %v", p, err, wrongApp)
				}
			})
		}
	})
}

// TestPhoneNumberOf: a caller who knows the user (the user ID of their
// token) has WeChat check that the phone code is theirs, with the openid
// sealed beside their session key, whether their user ID is the openid or
// the unionid. Another user's code is refused (40003 inside 6013), as is
// any code for a user with no stored openid, without a call to WeChat.
func TestPhoneNumberOf(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		alice := e.phoneUser("13800138000", "")
		bob := e.phoneUser("13900139000", "")
		carol := e.wx.AddUser(mpauthxtest.User{OpenID: "o-carol-of", UnionID: "u-carol-of", Phone: "13700137000"})
		ids := map[string]string{}
		for _, u := range []mpauthxtest.User{alice, carol} {
			res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if err != nil {
				t.Fatal(err)
			}
			ids[u.OpenID] = e.c.ExtractOpenID(res.Response)
		}
		if ids[carol.OpenID] != carol.UnionID {
			t.Fatalf("carol's user ID = %q, want her unionid", ids[carol.OpenID])
		}

		for _, u := range []mpauthxtest.User{alice, carol} {
			p, err := e.c.PhoneNumberOf(bg, ids[u.OpenID], e.wx.PhoneCode(u.OpenID))
			if err != nil || p.PurePhoneNumber != u.Phone {
				t.Errorf("PhoneNumberOf(%s, own code) = %+v, %v; want %s", ids[u.OpenID], p, err, u.Phone)
			}
		}

		// Bob's code sent in alice's session: WeChat refuses it; without
		// the user, PhoneNumber takes it.
		bobs := e.wx.PhoneCode(bob.OpenID)
		p, err := e.c.PhoneNumberOf(bg, ids[alice.OpenID], bobs)
		var we *mpauthx.WeChatError
		if mpauthx.Code(err) != mpauthx.StatusPhoneNumberError || !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeInvalidOpenID || p != (mpauthx.Phone{}) {
			t.Errorf("PhoneNumberOf(alice, bob's code) = %+v, %v; want 6013 wrapping errcode 40003", p, err)
		}
		if p, err := e.c.PhoneNumber(bg, bobs); err != nil || p.PurePhoneNumber != bob.Phone {
			t.Errorf("PhoneNumber(bob's code) = %+v, %v; want bob's phone", p, err)
		}

		// No stored openid: 6014, and WeChat is not asked.
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(bob.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.c.RevokeToken(bg, res.Response); err != nil {
			t.Fatal(err)
		}
		before := e.wx.Requests()
		for _, userID := range []string{bob.OpenID, "o-never-logged-in"} {
			if _, err := e.c.PhoneNumberOf(bg, userID, e.wx.PhoneCode(bob.OpenID)); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
				t.Errorf("PhoneNumberOf(%s) without a stored openid = %v, want 6014", userID, err)
			}
		}
		if n := e.wx.Requests() - before; n != 0 {
			t.Errorf("%d requests to WeChat without a stored openid, want 0", n)
		}

		for name, args := range map[string][2]string{"no user": {"", "p"}, "no code": {ids[alice.OpenID], ""}, "bad user ID": {"a|b", "p"}} {
			if _, err := e.c.PhoneNumberOf(bg, args[0], args[1]); mpauthx.Code(err) != mpauthx.StatusRequiredParamsMissing {
				t.Errorf("PhoneNumberOf, %s = %v, want 6001", name, err)
			}
		}

		if err := e.c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.PhoneNumberOf(bg, ids[alice.OpenID], e.wx.PhoneCode(alice.OpenID)); !errors.Is(err, mpauthx.ErrClosed) {
			t.Errorf("PhoneNumberOf after Close = %v, want ErrClosed", err)
		}
	})
}
