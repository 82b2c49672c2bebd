package mpauthxtest_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestApps: apps of several platforms on one Server, each user logging in
// through its own app only.
func TestApps(t *testing.T) {
	srv := newServer(t)
	second := srv.AddApp(mpauthxtest.App{AppID: "wx-second", AppSecret: "second-secret"})
	qq := srv.AddApp(mpauthxtest.App{Platform: "qq", AppID: "qq-app", AppSecret: "qq-secret"})
	oa := srv.AddApp(mpauthxtest.App{Platform: "wechat-oa", AppID: "wx-oa", AppSecret: "oa-secret"})
	if second.Platform != "wechat" || qq.Platform != "qq" {
		t.Errorf("AddApp platforms = %q, %q", second.Platform, qq.Platform)
	}
	if first, ok := srv.App(appID); !ok || first.Platform != "wechat" || first.AppSecret != secret {
		t.Errorf("App(first) = %+v, %v", first, ok)
	}
	if _, ok := srv.App("nope"); ok {
		t.Error("App reports an unknown app")
	}
	srv.AddUser(mpauthxtest.User{OpenID: "o-first", UnionID: "u1"})
	srv.AddUser(mpauthxtest.User{AppID: "wx-second", OpenID: "o-second", UnionID: "u1"})
	srv.AddUser(mpauthxtest.User{AppID: "qq-app", OpenID: "o-qq"})
	srv.AddUser(mpauthxtest.User{AppID: "wx-oa", OpenID: "o-oa"})

	// Each app's code works with its own credentials only.
	if r := mustCall(t, srv, params{appID: "wx-second", secret: "second-secret", grantType: "authorization_code", code: srv.Code("o-second")}); r.OpenID != "o-second" || r.UnionID != "u1" {
		t.Errorf("second app: %s", r.Body)
	}
	if r := mustCall(t, srv, params{appID: "qq-app", secret: "qq-secret", grantType: "authorization_code", code: srv.Code("o-qq")}); r.OpenID != "o-qq" {
		t.Errorf("QQ app: %s", r.Body)
	}
	if r := mustCall(t, srv, okParams(srv.Code("o-second"))); r.ErrCode != mpauthxtest.ErrCodeInvalidCode {
		t.Errorf("another app's code: %s, want errcode 40029", r.Body)
	}
	if r := mustCall(t, srv, params{appID: "wx-second", secret: secret, grantType: "authorization_code", code: srv.Code("o-second")}); r.ErrCode != mpauthxtest.ErrCodeInvalidSecret {
		t.Errorf("another app's secret: %s, want errcode 40125", r.Body)
	}
	// An official account has no code2session.
	if r := mustCall(t, srv, params{appID: oa.AppID, secret: oa.AppSecret, grantType: "authorization_code", code: srv.Code("o-oa")}); r.ErrCode != mpauthxtest.ErrCodeInvalidAppID {
		t.Errorf("official account at code2session: %s, want errcode 40013", r.Body)
	}

	// The watermark names the user's app.
	u, _ := srv.User("o-second")
	data, iv := srv.UserInfo("o-second")
	var info struct {
		Watermark struct {
			AppID string `json:"appid"`
		} `json:"watermark"`
	}
	if err := json.Unmarshal(decrypt(t, u.SessionKey, data, iv), &info); err != nil || info.Watermark.AppID != "wx-second" {
		t.Errorf("watermark appid = %q (%v), want wx-second", info.Watermark.AppID, err)
	}
}

// TestAddAppKeys: Douyin and Alipay apps get matching, distinct RSA keys
// and Alipay an AES key; a key the test gives is kept.
func TestAddAppKeys(t *testing.T) {
	srv := newServer(t)
	dy := srv.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-app", AppSecret: "tt-secret"})
	ali := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000001"})
	wx := srv.AddApp(mpauthxtest.App{Platform: "wechat-web", AppID: "wx-web", AppSecret: "web"})
	if wx.PrivateKey != "" || wx.PublicKey != "" || wx.AlipayPublicKey != "" || wx.AESKey != "" {
		t.Errorf("a WeChat website app got keys: %+v", wx)
	}
	seen := map[string]bool{}
	for _, a := range []mpauthxtest.App{dy, ali} {
		priv := parsePrivate(t, a.PrivateKey)
		pub := parsePublic(t, a.PublicKey)
		if !priv.PublicKey.Equal(pub) {
			t.Errorf("%s: PublicKey is not PrivateKey's", a.AppID)
		}
		if seen[a.PublicKey] {
			t.Errorf("%s: key reused", a.AppID)
		}
		seen[a.PublicKey] = true
	}
	if dy.AlipayPublicKey != "" || dy.AESKey != "" {
		t.Errorf("a Douyin app got Alipay's keys: %+v", dy)
	}
	if ali.AlipayPublicKey == "" || seen[ali.AlipayPublicKey] {
		t.Errorf("Alipay's key missing or the app's own")
	}
	parsePublic(t, ali.AlipayPublicKey)
	if k, err := base64.StdEncoding.DecodeString(ali.AESKey); err != nil || len(k) != 16 {
		t.Errorf("AESKey %q is not base64 of 16 bytes", ali.AESKey)
	}
	kept := srv.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-two", AppSecret: "x", PrivateKey: dy.PrivateKey})
	if kept.PrivateKey != dy.PrivateKey || kept.PublicKey != dy.PublicKey {
		t.Error("AddApp did not keep the given PrivateKey")
	}
}

func TestAppPanics(t *testing.T) {
	srv := newServer(t)
	srv.AddApp(mpauthxtest.App{AppID: "wx-two"})
	for name, f := range map[string]func(){
		"empty AppID":      func() { srv.AddApp(mpauthxtest.App{}) },
		"duplicate AppID":  func() { srv.AddApp(mpauthxtest.App{AppID: "wx-two"}) },
		"first app again":  func() { srv.AddApp(mpauthxtest.App{AppID: appID}) },
		"unknown platform": func() { srv.AddApp(mpauthxtest.App{Platform: "kuaishou", AppID: "k"}) },
		"bad key":          func() { srv.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt", PrivateKey: "nope"}) },
		"user of no app":   func() { srv.AddUser(mpauthxtest.User{AppID: "nope", OpenID: "o"}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			f()
		})
	}
}

func parsePrivate(t *testing.T, s string) *rsa.PrivateKey {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("not PEM: %q", s)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

func parsePublic(t *testing.T, s string) *rsa.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("not PEM: %q", s)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PublicKey)
}
