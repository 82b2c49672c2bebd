package mpauthx_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// hostileDoor is one platform call that reads a reply from the network.
type hostileDoor struct {
	name string
	path string                                         // the fake's endpoint whose reply is replaced
	call func(c *mpauthx.Client, code string) error     // the call, with a fresh code of the user
	code func(e *env, u mpauthxtest.User) string        // that code
	want mpauthx.StatusCode                             // the outer status code of every failure
	ok   func(e *env, u mpauthxtest.User) (body string) // a valid reply, for padding
}

// TestPlatformHostileReplies sends every platform call that reads the
// network replies no platform sends: over 1 MiB, 100k levels of nesting,
// a redirect, wrong types, numbers as strings, an error after a success
// under a duplicate key, and a server that drips its reply. Each fails
// with the call's status code (the cause's code inside), promptly, without
// a panic, a token or a user row.
func TestPlatformHostileReplies(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	oa := e.wx.AddApp(mpauthxtest.App{Platform: "wechat-oa", AppID: "wx-oa-hostile", AppSecret: "oa-secret"})
	dy := e.wx.AddApp(mpauthxtest.App{Platform: "douyin", AppID: "tt-hostile", AppSecret: "dy-secret"})
	ali := e.wx.AddApp(mpauthxtest.App{Platform: "alipay", AppID: "2021000hostile"})
	apps := map[string]mpauthxtest.App{oa.AppID: oa, dy.AppID: dy, ali.AppID: ali}
	client := func(a mpauthxtest.App, base string) *mpauthx.Client {
		return e.client(t, func(cfg *mpauthx.Config) {
			cfg.Platform = mpauthx.Platform(a.Platform)
			cfg.AppID, cfg.AppSecret = a.AppID, a.AppSecret
			cfg.PrivateKey, cfg.AlipayPublicKey, cfg.AESKey = a.PrivateKey, a.AlipayPublicKey, a.AESKey
			if base != "" {
				cfg.APIBase = base
			}
		})
	}
	users := map[string]mpauthxtest.User{}
	for id, a := range apps {
		users[id] = e.wx.AddUser(mpauthxtest.User{AppID: a.AppID, OpenID: "o-hostile-" + a.Platform, Phone: "13800000000"})
	}
	login := func(c *mpauthx.Client, code string) error { _, err := c.AuthorizeCode(bg, code); return err }
	loginCode := func(e *env, u mpauthxtest.User) string { return e.wx.Code(u.OpenID) }
	doors := map[string]hostileDoor{
		oa.AppID: {name: "official account login", path: mpauthxtest.OAuthAccessTokenPath, call: login, code: loginCode,
			want: mpauthx.StatusSessionKeyRequestError,
			ok:   func(*env, mpauthxtest.User) string { return `{"openid":"o-hostile-wechat-oa","access_token":"x"}` }},
		dy.AppID: {name: "Douyin login", path: mpauthxtest.DouyinCode2SessionPath, call: login, code: loginCode,
			want: mpauthx.StatusSessionKeyRequestError,
			ok: func(*env, mpauthxtest.User) string {
				return `{"err_no":0,"data":{"openid":"o-hostile-douyin","session_key":"AAAAAAAAAAAAAAAAAAAAAA=="}}`
			}},
		ali.AppID: {name: "Alipay login", path: mpauthxtest.AlipayGatewayPath, call: login, code: loginCode,
			want: mpauthx.StatusSessionKeyRequestError,
			ok: func(e *env, u mpauthxtest.User) string {
				return string(e.wx.AlipayReply(ali.AppID, "alipay_system_oauth_token_response", []byte(`{"open_id":"`+u.OpenID+`"}`)))
			}},
	}
	douyinPhone := hostileDoor{name: "Douyin phone number", path: mpauthxtest.DouyinPhoneNumberPath,
		call: func(c *mpauthx.Client, code string) error { _, err := c.PhoneNumber(bg, code); return err },
		code: func(e *env, u mpauthxtest.User) string { return e.wx.PhoneCode(u.OpenID) },
		want: mpauthx.StatusPhoneNumberError,
		ok: func(e *env, u mpauthxtest.User) string {
			return `{"err_no":0,"data":"` + e.wx.EncryptPhoneData(dy.AppID, []byte(`{"purePhoneNumber":"13800000000","watermark":{"appid":"`+dy.AppID+`"}}`)) + `"}`
		}}
	clientToken := hostileDoor{name: "Douyin client_token", path: mpauthxtest.ClientTokenPath,
		call: func(c *mpauthx.Client, _ string) error { _, err := c.AccessToken(bg); return err },
		code: func(*env, mpauthxtest.User) string { return "" },
		want: mpauthx.StatusAccessTokenError,
		ok: func(*env, mpauthxtest.User) string {
			return `{"data":{"access_token":"clt.x","expires_in":7200,"error_code":0}}`
		}}

	type reply struct {
		name  string
		body  func(ok string) string
		inner mpauthx.StatusCode // the wrapped *Error's code; 0: any
	}
	const depth = 100000
	replies := []reply{
		{"over 1 MiB", func(ok string) string { return ok + strings.Repeat(" ", 1<<20) }, mpauthx.StatusHTTPResponseError},
		{"nested arrays", func(string) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }, mpauthx.StatusJSONParseError},
		{"nested inside a valid reply", func(ok string) string {
			return strings.TrimSuffix(ok, "}") + `,"x":` + strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat("}", depth) + "}"
		}, 0},
		{"a JSON array", func(ok string) string { return "[" + ok + "]" }, 0},
		{"a JSON string", func(string) string { return `"ok"` }, 0},
		{"null", func(string) string { return `null` }, 0},
		{"not JSON", func(string) string { return "<html>busy</html>" }, mpauthx.StatusJSONParseError},
		{"empty", func(string) string { return "" }, mpauthx.StatusResponseIsNull},
	}
	// Replies that only make sense per door.
	perDoor := map[string][]reply{
		oa.AppID: {
			{"openid a number", func(string) string { return `{"openid":12345}` }, 0},
			{"errcode as a string", func(string) string { return `{"errcode":"40029","openid":"o-hostile-wechat-oa"}` }, 0},
			{"error after success, duplicate key", func(string) string {
				return `{"openid":"o-hostile-wechat-oa","errcode":0,"errcode":40029}`
			}, 0},
			{"snapshot as a string", func(string) string { return `{"openid":"o-hostile-wechat-oa","is_snapshotuser":"1"}` }, 0},
			{"snapshot as true", func(string) string { return `{"openid":"o-hostile-wechat-oa","is_snapshotuser":true}` }, 0},
			{"snapshot as 1.0", func(string) string { return `{"openid":"o-hostile-wechat-oa","is_snapshotuser":1.0}` }, 0},
			{"snapshot twice, 1 last", func(string) string {
				return `{"openid":"o-hostile-wechat-oa","is_snapshotuser":0,"is_snapshotuser":1}`
			}, 0},
		},
		dy.AppID: {
			{"err_no as a string", func(string) string {
				return `{"err_no":"0","data":{"openid":"o-hostile-douyin","session_key":"AAAAAAAAAAAAAAAAAAAAAA=="}}`
			}, 0},
			{"data an array", func(string) string { return `{"err_no":0,"data":[]}` }, 0},
			{"anonymous only", func(string) string {
				return `{"err_no":0,"data":{"anonymous_openid":"a","session_key":"AAAAAAAAAAAAAAAAAAAAAA=="}}`
			}, 0},
			{"error after success, duplicate key", func(ok string) string {
				return strings.TrimSuffix(ok, "}") + `,"err_no":40018}`
			}, 0},
		},
		ali.AppID: {
			{"signed member twice", func(ok string) string {
				return strings.Replace(ok, `{"alipay`, `{"alipay_system_oauth_token_response":{"open_id":"intruder"},"alipay`, 1)
			}, mpauthx.StatusJSONParseError},
			{"sign twice", func(ok string) string { return strings.Replace(ok, `,"sign":`, `,"sign":"AAAA","sign":`, 1) }, mpauthx.StatusJSONParseError},
			{"sign a number", func(string) string {
				return `{"alipay_system_oauth_token_response":{"open_id":"x"},"sign":12}`
			}, mpauthx.StatusJSONParseError},
			{"escaped member name, unsigned", func(string) string {
				return `{"alipay_system_oauth_token_respons\u0065":{"open_id":"intruder"}}`
			}, 0},
			{"success and error", func(ok string) string {
				return strings.Replace(ok, `{"alipay`, `{"error_response":{"code":"40002"},"alipay`, 1)
			}, mpauthx.StatusJSONParseError},
			{"trailing object", func(ok string) string { return ok + `{"alipay_system_oauth_token_response":{"open_id":"intruder"}}` }, mpauthx.StatusJSONParseError},
			{"signed member, unsigned extra user", func(ok string) string {
				return strings.Replace(ok, `{"alipay`, `{"open_id":"intruder","alipay`, 1)
			}, -1}, // accepted: the extra member is not read
		},
	}
	run := func(t *testing.T, c *mpauthx.Client, d hostileDoor, u mpauthxtest.User, r reply) {
		t.Helper()
		body := r.body(d.ok(e, u))
		e.wx.FailNextAt(d.path, 1, mpauthxtest.Fault{Body: []byte(body)})
		err := d.call(c, d.code(e, u))
		if r.inner == -1 {
			if err != nil {
				t.Errorf("%s, %s: %v, want success", d.name, r.name, err)
			}
			return
		}
		if mpauthx.Code(err) != d.want {
			t.Errorf("%s, %s: %v, want %d", d.name, r.name, err, d.want)
			return
		}
		var inner *mpauthx.Error
		if r.inner != 0 && (!errors.As(errors.Unwrap(err), &inner) || inner.Code != r.inner) {
			t.Errorf("%s, %s: %v, want %d inside", d.name, r.name, err, r.inner)
		}
		if len(err.Error()) > 2000 {
			t.Errorf("%s, %s: an error of %d bytes", d.name, r.name, len(err.Error()))
		}
	}
	for id, d := range doors {
		c := client(apps[id], "")
		for _, r := range append(replies, perDoor[id]...) {
			run(t, c, d, users[id], r)
		}
	}
	dc := client(dy, "")
	for _, r := range replies {
		run(t, dc, douyinPhone, users[dy.AppID], r)
	}
	for _, r := range replies {
		// No shared token, and no back-off left by the last failure.
		e.rdb.Del(bg, "mpauthx:{app:"+dy.AppID+"}:access_token", "mpauthx:{app:"+dy.AppID+"}:access_token:failed")
		run(t, client(dy, ""), clientToken, mpauthxtest.User{}, r)
	}
	if n := e.userRows(t); n != 1 { // the Alipay reply with an extra member
		t.Errorf("%d user rows after hostile replies, want 1", n)
	}

	t.Run("redirect", func(t *testing.T) {
		var hits int
		elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
		defer elsewhere.Close()
		redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}))
		defer redirect.Close()
		for id, d := range doors {
			err := d.call(client(apps[id], redirect.URL), "a-code")
			var inner *mpauthx.Error
			if mpauthx.Code(err) != d.want || !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPError {
				t.Errorf("%s redirected: %v, want %d around 6002", d.name, err, d.want)
			}
		}
		e.rdb.Del(bg, "mpauthx:{app:"+dy.AppID+"}:access_token", "mpauthx:{app:"+dy.AppID+"}:access_token:failed")
		_, err := client(dy, redirect.URL).AccessToken(bg)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError {
			t.Errorf("client_token redirected: %v", err)
		}
		if hits != 0 {
			t.Errorf("%d requests followed a redirect", hits)
		}
	})

	t.Run("drip", func(t *testing.T) {
		// A server that sends its headers, then a byte every 50 ms.
		drip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for r.Context().Err() == nil {
				w.Write([]byte(" "))
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
			}
		}))
		defer drip.Close()
		for id, d := range doors {
			ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
			start := time.Now()
			_, err := client(apps[id], drip.URL).AuthorizeCode(ctx, "a-code")
			cancel()
			if mpauthx.Code(err) != d.want || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
				t.Errorf("%s dripping: %v after %v, want %d wrapping the deadline, promptly", d.name, err, time.Since(start), d.want)
			}
		}
	})
}
