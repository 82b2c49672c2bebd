package mpauthx_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// quotingTransport fails every request with an error quoting all of it: the
// URL, every header and the body, as a careless proxy or a debugging
// RoundTripper might.
func quotingTransport() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
		}
		return nil, fmt.Errorf("proxy refused %s %s headers %v body %s", r.Method, r.URL, r.Header, body)
	})
}

// echoBodyTransport answers 200 with a body whose read fails quoting the
// whole request.
func echoBodyTransport() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
		}
		text := fmt.Sprintf("reset reading %s headers %v body %s", r.URL, r.Header, body)
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(failingReader{text}), Request: r}, nil
	})
}

// failingReader fails every read with its text.
type failingReader struct{ text string }

func (f failingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("%s", f.text) }

// TestPlatformSecretsNoLeak drives every failure of the platform logins
// (official account, Douyin, Alipay), of Douyin's client_token and phone
// number and of Alipay's phone response, with a logger at Debug level,
// and scans every error, Result and log line for the secrets they handle:
// the app secret, the private keys, the AES key, session keys, client
// tokens, the user's OAuth tokens, login and phone codes, phone numbers and
// Alipay's phone response.
func TestPlatformSecretsNoLeak(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	logger, logs := captureLogs(true)
	s := &leakScan{t: t}
	const secret = "Plat+Secret/=&%Leak"
	const sessionKey = "RG91eWluU2Vzc2lvbktleSE="
	s.secret(secret, sessionKey)

	oa := e.wx.AddApp(mpauthxtest.App{Platform: "wechat-oa", AppID: "wx-oa-leak", AppSecret: secret})
	dy := e.wx.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-leak", AppSecret: secret})
	ali := e.wx.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000000leak"})
	for _, k := range []string{dy.PrivateKey, ali.PrivateKey} {
		s.secret(k)
		for _, line := range strings.Split(k, "\n") {
			if len(line) > 40 && !strings.HasPrefix(line, "-----") {
				s.secret(line)
			}
		}
	}
	aesRaw, _ := base64.StdEncoding.DecodeString(ali.AESKey)
	s.secret(ali.AESKey, string(aesRaw))

	client := func(a mpauthxtest.App, tweak func(*mpauthx.Config)) *mpauthx.Client {
		return e.client(t, func(cfg *mpauthx.Config) {
			cfg.Platform = mpauthx.Platform(a.Platform)
			cfg.AppID, cfg.AppSecret = a.AppID, a.AppSecret
			cfg.PrivateKey, cfg.AlipayPublicKey, cfg.AESKey = a.PrivateKey, a.AlipayPublicKey, a.AESKey
			cfg.Logger = logger
			if tweak != nil {
				tweak(cfg)
			}
		})
	}
	echo := func(rt http.RoundTripper) func(*mpauthx.Config) {
		return func(cfg *mpauthx.Config) { cfg.HTTPClient = &http.Client{Transport: rt} }
	}
	code := func(openID string) string {
		c := e.wx.Code(openID)
		s.secret(c)
		return c
	}
	phoneCode := func(openID string) string {
		c := e.wx.PhoneCode(openID)
		s.secret(c)
		return c
	}

	t.Run("official account", func(t *testing.T) {
		c := client(oa, nil)
		u := e.wx.AddUser(mpauthxtest.User{AppID: oa.AppID, OpenID: "o-oa-leak", UnionID: "u-oa-leak"})
		for name, body := range map[string]func(code string) string{
			"errmsg echoing": func(code string) string {
				return `{"errcode":40029,"errmsg":"invalid code ` + code + ` secret ` + secret + `"}`
			},
			"bad openid with tokens": func(string) string {
				return `{"access_token":"OAUTHACCESSLEAK","refresh_token":"OAUTHREFRESHLEAK","openid":"o|x"}`
			},
			"snapshot with tokens": func(string) string {
				return `{"access_token":"OAUTHACCESSLEAK","refresh_token":"OAUTHREFRESHLEAK","openid":"o-oa-leak","is_snapshotuser":1}`
			},
			"not JSON": func(code string) string { return "<html>" + code + secret + "</html>" },
		} {
			cd := code(u.OpenID)
			e.wx.FailNextAt(mpauthxtest.OAuthAccessTokenPath, 1, mpauthxtest.Fault{Body: []byte(body(cd))})
			s.call("OA " + name)(c.AuthorizeCode(bg, cd))
		}
		s.secret("OAUTHACCESSLEAK", "OAUTHREFRESHLEAK")
		s.call("OA echoing transport")(client(oa, echo(quotingTransport())).AuthorizeCode(bg, code(u.OpenID)))
		s.call("OA echoing body")(client(oa, echo(echoBodyTransport())).AuthorizeCode(bg, code(u.OpenID)))
	})

	t.Run("douyin", func(t *testing.T) {
		c := client(dy, nil)
		u := e.wx.AddUser(mpauthxtest.User{AppID: dy.AppID, OpenID: "o-dy-leak", UnionID: "u-dy-leak", SessionKey: sessionKey, Phone: "13912345678"})
		s.secret(u.Phone)
		for name, body := range map[string]func(code string) string{
			"err_tips echoing": func(code string) string {
				return `{"err_no":40018,"err_tips":"bad code ` + code + ` secret ` + secret + `"}`
			},
			"bad openid with key": func(string) string {
				return `{"err_no":0,"data":{"openid":"o|x","session_key":"` + sessionKey + `"}}`
			},
			"no openid": func(string) string { return `{"err_no":0,"data":{"session_key":"` + sessionKey + `"}}` },
		} {
			cd := code(u.OpenID)
			e.wx.FailNextAt(mpauthxtest.DouyinCode2SessionPath, 1, mpauthxtest.Fault{Body: []byte(body(cd))})
			s.call("Douyin login " + name)(c.AuthorizeCode(bg, cd))
		}
		for _, rt := range []http.RoundTripper{quotingTransport(), echoBodyTransport()} {
			ec := client(dy, echo(rt))
			s.call("Douyin login echoing")(ec.AuthorizeCode(bg, code(u.OpenID)))
			_, err := ec.AccessToken(bg)
			s.err("Douyin client_token echoing", nil, err)
			s.call("Douyin phone login echoing")(ec.AuthorizePhone(bg, code(u.OpenID), phoneCode(u.OpenID)))
		}

		e.rdb.Del(bg, "mpauthx:{app:"+dy.AppID+"}:access_token:failed") // the echoing Clients' back-off
		tok, err := client(dy, nil).AccessToken(bg)
		if err != nil {
			t.Fatal(err)
		}
		s.secret(tok)

		// The phone number.
		for name, body := range map[string]func(pc string) string{
			"err_msg echoing": func(pc string) string {
				return `{"err_no":28005187,"err_msg":"bad code ` + pc + ` token ` + tok + ` secret ` + secret + `"}`
			},
			"another app's watermark": func(string) string {
				return `{"err_no":0,"data":"` + e.wx.EncryptPhoneData(dy.AppID, []byte(`{"phoneNumber":"13912345678","purePhoneNumber":"13912345678","countryCode":"86","watermark":{"appid":"tt-else"}}`)) + `"}`
			},
			"not a number": func(string) string {
				return `{"err_no":0,"data":"` + e.wx.EncryptPhoneData(dy.AppID, []byte(`{"phoneNumber":"13912345678x","purePhoneNumber":"13912345678x","watermark":{"appid":"tt-leak"}}`)) + `"}`
			},
			"garbage data": func(string) string {
				return `{"err_no":0,"data":"` + base64.StdEncoding.EncodeToString(make([]byte, 256)) + `"}`
			},
		} {
			pc := phoneCode(u.OpenID)
			e.wx.FailNextAt(mpauthxtest.DouyinPhoneNumberPath, 1, mpauthxtest.Fault{Body: []byte(body(pc))})
			s.call("Douyin phone " + name)(c.AuthorizePhone(bg, code(u.OpenID), pc))
			pc = phoneCode(u.OpenID)
			e.wx.FailNextAt(mpauthxtest.DouyinPhoneNumberPath, 1, mpauthxtest.Fault{Body: []byte(body(pc))})
			_, err := c.PhoneNumber(bg, pc)
			s.err("Douyin PhoneNumber "+name, nil, err)
		}
		// A rejected client_token quoted by Douyin, then renewed: the
		// call succeeds and nothing quotes the old token.
		e.wx.FailNextAt(mpauthxtest.DouyinPhoneNumberPath, 1, mpauthxtest.Fault{Body: []byte(`{"err_no":28001003,"err_msg":"token ` + tok + ` invalid"}`)})
		if _, err := c.PhoneNumber(bg, phoneCode(u.OpenID)); err != nil {
			t.Fatalf("PhoneNumber after a rejected client_token: %v", err)
		}
		// The phone call's transport quotes its access-token header.
		for _, rt := range []http.RoundTripper{quotingTransport(), echoBodyTransport()} {
			pc := client(dy, echo(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Path == mpauthxtest.DouyinPhoneNumberPath {
					return rt.RoundTrip(r)
				}
				return http.DefaultTransport.RoundTrip(r)
			})))
			s.call("Douyin phone echoing its header")(pc.AuthorizePhone(bg, code(u.OpenID), phoneCode(u.OpenID)))
		}
		e.wx.ExpireClientToken()
		_, err = c.PhoneNumber(bg, phoneCode(u.OpenID))
		s.err("Douyin phone, renewal refused", nil, err)
		e.rdb.Del(bg, "mpauthx:{app:"+dy.AppID+"}:"+"access_token", "mpauthx:{app:"+dy.AppID+"}:"+"access_token:failed", "mpauthx:{app:"+dy.AppID+"}:"+"force_spacing")
		e.wx.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{Body: []byte(`{"data":{"error_code":10013,"description":"bad secret ` + secret + `"},"message":"error"}`)})
		_, err = client(dy, nil).AccessToken(bg)
		s.err("client_token error echoing", nil, err)
	})

	t.Run("alipay", func(t *testing.T) {
		c := client(ali, nil)
		u := e.wx.AddUser(mpauthxtest.User{AppID: ali.AppID, OpenID: "083lLeakUser", Phone: "13712345678"})
		s.secret(u.Phone)
		resp := e.wx.AlipayPhoneResponse(u.OpenID)
		var env struct {
			Response string `json:"response"`
		}
		if err := json.Unmarshal([]byte(resp), &env); err != nil {
			t.Fatal(err)
		}
		s.secret(resp, env.Response)
		for name, body := range map[string]func(code string) string{
			"unsigned error echoing": func(code string) string {
				return `{"error_response":{"code":"40002","msg":"` + code + `","sub_code":"isv.code-invalid","sub_msg":"code ` + code + ` invalid"}}`
			},
			"mis-signed success": func(code string) string {
				return `{"alipay_system_oauth_token_response":{"open_id":"083lLeakUser","access_token":"ALIACCESSLEAK"},"sign":"AAAA"}`
			},
			"not JSON": func(code string) string { return "<html>" + code + "</html>" },
		} {
			cd := code(u.OpenID)
			e.wx.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, mpauthxtest.Fault{Body: []byte(body(cd))})
			s.call("Alipay login " + name)(c.AuthorizeCode(bg, cd))
		}
		s.secret("ALIACCESSLEAK")
		cd := code(u.OpenID)
		signed := e.wx.AlipayReply(ali.AppID, "alipay_system_oauth_token_response",
			[]byte(`{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"code `+cd+` invalid"}`))
		e.wx.FailNextAt(mpauthxtest.AlipayGatewayPath, 1, mpauthxtest.Fault{Body: signed})
		s.call("Alipay login signed error echoing")(c.AuthorizeCode(bg, cd))
		for _, rt := range []http.RoundTripper{quotingTransport(), echoBodyTransport()} {
			ec := client(ali, echo(rt))
			s.call("Alipay login echoing")(ec.AuthorizeCode(bg, code(u.OpenID)))
		}

		// Phone responses that fail.
		for name, r := range map[string]string{
			"tampered sign": strings.Replace(resp, `"sign":"`, `"sign":"AB`, 1),
			"bad mobile":    e.wx.AlipayEncryptPhone(ali.AppID, []byte(`{"code":"10000","msg":"Success","mobile":"13712345678x"}`)),
			"error inside":  e.wx.AlipayEncryptPhone(ali.AppID, []byte(`{"code":"40003","msg":"insufficient conditions","subCode":"isv.invalid-auth-relations","subMsg":"no auth"}`)),
			"no mobile":     e.wx.AlipayEncryptPhone(ali.AppID, []byte(`{"code":"10000","msg":"Success"}`)),
			"huge":          resp + strings.Repeat(" ", 20<<10),
		} {
			s.secret(r)
			_, err := c.PhoneNumber(bg, r)
			s.err("Alipay PhoneNumber "+name, nil, err)
			s.call("Alipay AuthorizePhone " + name)(c.AuthorizePhone(bg, code(u.OpenID), r))
		}
		noAES := client(ali, func(cfg *mpauthx.Config) { cfg.AESKey = "" })
		_, err := noAES.PhoneNumber(bg, resp)
		s.err("Alipay PhoneNumber without AESKey", nil, err)
		wrongAES := client(ali, func(cfg *mpauthx.Config) { cfg.AESKey = base64.StdEncoding.EncodeToString(make([]byte, 16)) })
		_, err = wrongAES.PhoneNumber(bg, resp)
		s.err("Alipay PhoneNumber wrong AESKey", nil, err)

		// Configuration errors quote no key.
		for name, tweak := range map[string]func(*mpauthx.Config){
			"private key as Alipay's": func(cfg *mpauthx.Config) { cfg.AlipayPublicKey = ali.PrivateKey },
			"truncated private key":   func(cfg *mpauthx.Config) { cfg.PrivateKey = ali.PrivateKey[:len(ali.PrivateKey)/2] },
			"AES key of 15 bytes":     func(cfg *mpauthx.Config) { cfg.AESKey = base64.StdEncoding.EncodeToString(aesRaw[:15]) },
			"own public key":          func(cfg *mpauthx.Config) { cfg.AlipayPublicKey = ali.PublicKey },
			"AppSecret on Douyin key": func(cfg *mpauthx.Config) { cfg.Platform = mpauthx.DouyinMiniProgram; cfg.AESKey = ali.AESKey },
		} {
			cfg := e.cfg
			cfg.Platform, cfg.AppID, cfg.AppSecret = mpauthx.AlipayMiniProgram, ali.AppID, ""
			cfg.PrivateKey, cfg.AlipayPublicKey, cfg.AESKey = ali.PrivateKey, ali.AlipayPublicKey, ali.AESKey
			tweak(&cfg)
			if c, err := mpauthx.New(cfg); err == nil {
				c.Close()
				if name != "AppSecret on Douyin key" {
					t.Errorf("New %s succeeded", name)
				}
			} else {
				s.err("New "+name, nil, err)
			}
			s.text("Config "+name, fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg))
		}
	})

	t.Run("ctx", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bg, time.Millisecond)
		defer cancel()
		<-ctx.Done()
		for _, a := range []mpauthxtest.App{oa, dy, ali} {
			s.call(a.Platform + " expired ctx")(client(a, nil).AuthorizeCode(ctx, "a-code-"+a.Platform))
		}
	})

	out := logs.String()
	for _, code := range []string{"6008", "6012", "6013"} {
		if !strings.Contains(out, `"status_code":`+code) {
			t.Errorf("no failure with code %s was logged", code)
		}
	}
	s.check(out)
	if os.Getenv("LEAKDUMP") != "" {
		for _, x := range s.texts {
			t.Log(strings.SplitN(x, "\n", 2)[0])
		}
	}
	t.Logf("%d failure texts and %d log bytes scanned for %d secret forms", len(s.texts), len(out), len(s.secrets))
}
