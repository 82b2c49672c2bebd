package mpauthxtest_test

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// alipayClient signs and sends gateway requests for one Alipay app, and
// checks the replies' signatures, independently of mpauthx.
type alipayClient struct {
	t      *testing.T
	srv    *mpauthxtest.Server
	app    mpauthxtest.App
	key    *rsa.PrivateKey
	alipay *rsa.PublicKey
}

func newAlipayClient(t *testing.T, srv *mpauthxtest.Server, app mpauthxtest.App) *alipayClient {
	t.Helper()
	b, _ := pem.Decode([]byte(app.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &alipayClient{t: t, srv: srv, app: app, key: k.(*rsa.PrivateKey), alipay: parsePublic(t, app.AlipayPublicKey)}
}

// params are a valid alipay.system.oauth.token request for code, unsigned.
func (c *alipayClient) params(code string) url.Values {
	return url.Values{
		"app_id": {c.app.AppID}, "method": {"alipay.system.oauth.token"}, "format": {"JSON"},
		"charset": {"utf-8"}, "sign_type": {"RSA2"}, "version": {"1.0"},
		"timestamp":  {time.Now().In(time.FixedZone("", 8*3600)).Format("2006-01-02 15:04:05")},
		"grant_type": {"authorization_code"}, "code": {code},
	}
}

// sign sets v's sign with key.
func sign(key *rsa.PrivateKey, v url.Values) {
	var keys []string
	for k := range v {
		if k != "sign" && v.Get(k) != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, k+"="+v.Get(k))
	}
	h := sha256.Sum256([]byte(strings.Join(pairs, "&")))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	if err != nil {
		panic(err)
	}
	v.Set("sign", base64.StdEncoding.EncodeToString(sig))
}

// post sends v to the gateway and returns the reply's body.
func (c *alipayClient) post(v url.Values) string {
	c.t.Helper()
	resp, err := http.Post(c.srv.URL+mpauthxtest.AlipayGatewayPath, "application/x-www-form-urlencoded;charset=utf-8", strings.NewReader(v.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// memberRE cuts a compact reply into its member's name, raw value and sign.
var memberRE = regexp.MustCompile(`^\{"([a-z_]+)":(\{.*\})(?:,"sign":"([^"]*)")?\}$`)

// reply checks body's shape and signature (when signed) and returns its
// member, the member's fields and whether it was signed.
func (c *alipayClient) reply(body string) (member string, fields map[string]any, signed bool) {
	c.t.Helper()
	m := memberRE.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("reply %s is not {member, sign}", body)
	}
	if m[3] != "" {
		sig, _ := base64.StdEncoding.DecodeString(m[3])
		h := sha256.Sum256([]byte(m[2]))
		if rsa.VerifyPKCS1v15(c.alipay, crypto.SHA256, h[:], sig) != nil {
			c.t.Fatalf("reply %s: the sign does not verify with App.AlipayPublicKey", body)
		}
	}
	if err := json.Unmarshal([]byte(m[2]), &fields); err != nil {
		c.t.Fatal(err)
	}
	return m[1], fields, m[3] != ""
}

func TestAlipayGateway(t *testing.T) {
	srv := newServer(t)
	app := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000001"})
	srv.AddUser(mpauthxtest.User{AppID: app.AppID, OpenID: "083luGU2openid"})
	srv.AddUser(mpauthxtest.User{AppID: app.AppID, OpenID: "2088102104794936"})
	c := newAlipayClient(t, srv, app)

	// A success: open_id, signed over the bytes as sent, slashes escaped.
	code := srv.Code("083luGU2openid")
	v := c.params(code)
	sign(c.key, v)
	body := c.post(v)
	member, f, signed := c.reply(body)
	if member != "alipay_system_oauth_token_response" || !signed || f["open_id"] != "083luGU2openid" || f["user_id"] != nil || f["access_token"] == "" {
		t.Fatalf("reply %s", body)
	}
	if m := memberRE.FindStringSubmatch(body); !strings.Contains(m[2], `\/`) || strings.Contains(strings.ReplaceAll(m[2], `\/`, ""), "/") {
		t.Errorf("reply %s: its member's slashes are not all escaped, or it has none", body)
	}
	// The code is single use: isv.code-invalid, signed.
	member, f, signed = c.reply(c.post(v))
	if member != "error_response" || !signed || f["code"] != "40002" || f["sub_code"] != "isv.code-invalid" {
		t.Fatalf("reused code: %s %v signed=%v", member, f, signed)
	}
	// An older app's user: user_id.
	v = c.params(srv.Code("2088102104794936"))
	sign(c.key, v)
	if _, f, _ := c.reply(c.post(v)); f["user_id"] != "2088102104794936" || f["open_id"] != nil {
		t.Fatalf("user_id user: %v", f)
	}

	other := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000002"})
	wrongKey := newAlipayClient(t, srv, other).key
	tests := []struct {
		name    string
		change  func(v url.Values)
		key     *rsa.PrivateKey
		code    string
		sub     string
		signed  bool
		wantNot bool
	}{
		{name: "unknown app", change: func(v url.Values) { v.Set("app_id", "2021009999999999") }, code: "40002", sub: "isv.invalid-app-id"},
		{name: "WeChat app", change: func(v url.Values) { v.Set("app_id", appID) }, code: "40002", sub: "isv.invalid-app-id"},
		{name: "no sign", key: nil, code: "40001", sub: "isv.missing-sign"},
		{name: "no timestamp", change: func(v url.Values) { v.Del("timestamp") }, code: "40001", sub: "isv.missing-timestamp"},
		{name: "RSA", change: func(v url.Values) { v.Set("sign_type", "RSA") }, code: "40002", sub: "isv.invalid-signature-type"},
		{name: "UTC timestamp", change: func(v url.Values) { v.Set("timestamp", time.Now().UTC().Format("2006-01-02 15:04:05")) }, code: "40002", sub: "isv.invalid-timestamp"},
		{name: "bad timestamp", change: func(v url.Values) { v.Set("timestamp", "2024-01-01T12:00:00Z") }, code: "40002", sub: "isv.invalid-timestamp"},
		{name: "another app's key", key: wrongKey, code: "40002", sub: "isv.invalid-signature"},
		{name: "changed after signing", change: func(v url.Values) {}, code: "40002", sub: "isv.invalid-signature"},
		{name: "other method", change: func(v url.Values) { v.Set("method", "alipay.user.info.share") }, code: "40002", sub: "isv.invalid-method"},
		{name: "refresh grant", change: func(v url.Values) { v.Set("grant_type", "refresh_token") }, code: "40002", sub: "isv.grant-type-invalid", signed: true},
		{name: "unknown code", change: func(v url.Values) { v.Set("code", "nope") }, code: "40002", sub: "isv.code-invalid", signed: true},
		{name: "other app's code", change: func(v url.Values) { v.Set("app_id", other.AppID) }, key: wrongKey, code: "40002", sub: "isv.code-invalid", signed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			v := c.params(srv.Code("083luGU2openid"))
			key := c.key
			if tt.key != nil || tt.name == "no sign" {
				key = tt.key
			}
			switch {
			case tt.name == "changed after signing":
				sign(key, v)
				v.Set("code", srv.Code("083luGU2openid"))
			case tt.change != nil:
				tt.change(v)
				fallthrough
			default:
				if key != nil {
					sign(key, v)
				}
			}
			if tt.name == "other app's code" {
				// other's client signs a code of the first app's user.
				c2 := newAlipayClient(t, srv, other)
				member, f, signed := c2.reply(c2.post(v))
				if member != "error_response" || f["sub_code"] != tt.sub || signed != tt.signed {
					t.Fatalf("= %s %v signed=%v", member, f, signed)
				}
				return
			}
			member, f, signed := c.reply(c.post(v))
			if member != "error_response" || f["code"] != tt.code || f["sub_code"] != tt.sub || signed != tt.signed || f["sub_msg"] == "" {
				t.Fatalf("= %s %v signed=%v, want %s %s signed=%v", member, f, signed, tt.code, tt.sub, tt.signed)
			}
		})
	}
}

// TestAlipayGatewayFaults: a Fault's ErrCode is Alipay's code and ErrMsg
// its sub_code, unsigned; a faulted request does not use its code;
// AlipayReply signs a body of the test's making.
func TestAlipayGatewayFaults(t *testing.T) {
	srv := newServer(t)
	app := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000001"})
	srv.AddUser(mpauthxtest.User{AppID: app.AppID, OpenID: "o1"})
	c := newAlipayClient(t, srv, app)
	v := c.params(srv.Code("o1"))
	sign(c.key, v)

	srv.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, mpauthxtest.Fault{ErrCode: 20000, ErrMsg: "isp.unknow-error"})
	member, f, signed := c.reply(c.post(v))
	if member != "error_response" || signed || f["code"] != "20000" || f["sub_code"] != "isp.unknow-error" || f["msg"] != "Service Currently Unavailable" {
		t.Fatalf("fault: %s %v signed=%v", member, f, signed)
	}
	value := []byte(`{"open_id":"forged"}`)
	srv.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, mpauthxtest.Fault{Body: srv.AlipayReply(app.AppID, "alipay_system_oauth_token_response", value)})
	if _, f, signed := c.reply(c.post(v)); !signed || f["open_id"] != "forged" {
		t.Fatalf("AlipayReply body: %v signed=%v", f, signed)
	}
	if s := srv.AlipaySign(app.AppID, value); !strings.Contains(string(srv.AlipayReply(app.AppID, "x", value)), s) {
		t.Fatal("AlipaySign and AlipayReply disagree")
	}
	srv.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, mpauthxtest.Fault{Status: 502})
	resp, err := http.Post(srv.URL+mpauthxtest.AlipayGatewayPath, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("Status fault: HTTP %d", resp.StatusCode)
	}
	// The faults did not use the code.
	if _, f, _ := c.reply(c.post(v)); f["open_id"] != "o1" {
		t.Fatalf("after the faults: %v", f)
	}
}

func TestAlipayPhoneResponse(t *testing.T) {
	srv := newServer(t)
	app := srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000000001"})
	srv.AddUser(mpauthxtest.User{AppID: app.AppID, OpenID: "o1", Phone: "13800000000"})
	pub := parsePublic(t, app.AlipayPublicKey)
	var env map[string]string
	if err := json.Unmarshal([]byte(srv.AlipayPhoneResponse("o1")), &env); err != nil {
		t.Fatal(err)
	}
	if env["sign_type"] != "RSA2" || env["encrypt_type"] != "AES" || env["charset"] != "UTF-8" {
		t.Fatalf("envelope %v", env)
	}
	sig, _ := base64.StdEncoding.DecodeString(env["sign"])
	h := sha256.Sum256([]byte(`"` + env["response"] + `"`))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) != nil {
		t.Fatal("the sign does not cover the ciphertext in quotes")
	}
	key, _ := base64.StdEncoding.DecodeString(app.AESKey)
	ct, _ := base64.StdEncoding.DecodeString(env["response"])
	block, _ := aes.NewCipher(key)
	cipher.NewCBCDecrypter(block, make([]byte, 16)).CryptBlocks(ct, ct)
	ct = ct[:len(ct)-int(ct[len(ct)-1])]
	var plain map[string]string
	if err := json.Unmarshal(ct, &plain); err != nil || plain["code"] != "10000" || plain["mobile"] != "13800000000" {
		t.Fatalf("plaintext %s (%v)", ct, err)
	}
	// A test's own plaintext.
	var env2 map[string]string
	json.Unmarshal([]byte(srv.AlipayEncryptPhone(app.AppID, []byte(`{"code":"40003"}`))), &env2)
	if env2["response"] == env["response"] || env2["sign"] == "" {
		t.Fatal("AlipayEncryptPhone")
	}
	srv.AddUser(mpauthxtest.User{OpenID: "wx-user"})
	for name, f := range map[string]func(){
		"WeChat user": func() { srv.AlipayPhoneResponse("wx-user") },
		"unknown":     func() { srv.AlipayPhoneResponse("nobody") },
		"WeChat app":  func() { srv.AlipayEncryptPhone(appID, nil) },
		"sign":        func() { srv.AlipaySign("nope", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
