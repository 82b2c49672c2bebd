package mpauthx_test

import (
	"crypto/rand"

	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestLinkByPhoneCountry: LinkByPhone joins numbers, not their national
// digits. A Brazilian in Santos (+55 13 91234-5678) and a person in
// mainland China (+86 139 1234 5678) share the pure number
// "13912345678"; the second one's first Douyin phone login must not open
// the first one's WeChat account, nor be refused because of it. User.Phone
// stays the pure number.
func TestLinkByPhoneCountry(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		br := e.wx.AddUser(mpauthxtest.User{OpenID: "o-br-" + rand.Text()[:8], Phone: "13912345678", CountryCode: "55"})
		res, err := e.c.AuthorizePhone(bg, e.wx.Code(br.OpenID), e.wx.PhoneCode(br.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		brID := e.c.ExtractOpenID(res.Response)
		if u, err := e.c.User(bg, brID); err != nil || u.Phone != "13912345678" {
			t.Fatalf("User = %+v, %v; want the pure number", u, err)
		}

		a := e.wx.AddApp(mpauthxtest.App{Platform: string(mpauthx.DouyinMiniProgram), AppID: "tt-" + rand.Text()[:8], AppSecret: "s"})
		tt := e.client(t, func(cfg *mpauthx.Config) {
			cfg.Platform = mpauthx.DouyinMiniProgram
			cfg.AppID, cfg.AppSecret, cfg.PrivateKey = a.AppID, a.AppSecret, a.PrivateKey
			cfg.LinkByPhone = true
		})
		tok, err := e.c.AccessToken(bg)
		if err != nil {
			t.Fatal(err)
		}
		mpauthx.SetAccessToken(tt, tok)
		cn := e.platformUser(a, mpauthxtest.User{Phone: "13912345678", CountryCode: "86"})
		res, err = tt.AuthorizePhone(bg, e.wx.Code(cn.OpenID), e.wx.PhoneCode(cn.OpenID))
		if err != nil {
			t.Fatalf("the mainland person's Douyin phone login: %v", err)
		}
		if got := tt.ExtractOpenID(res.Response); got == brID {
			t.Fatalf("the mainland person's Douyin phone login opened the Brazilian's account %q", brID)
		}
		// The same number of the same country does link.
		cn2 := e.platformUser(a, mpauthxtest.User{Phone: "13912345678", CountryCode: "55"})
		res, err = tt.AuthorizePhone(bg, e.wx.Code(cn2.OpenID), e.wx.PhoneCode(cn2.OpenID))
		if err != nil || tt.ExtractOpenID(res.Response) != brID {
			t.Fatalf("a Douyin phone login with +55 13912345678 = %q, %v; want the Brazilian's user %q", tt.ExtractOpenID(res.Response), err, brID)
		}
	})
}
