package mpauthx_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// douyinInstances returns n Douyin Clients of e's app on e's Redis and
// database, all reading clk.
func (e *env) douyinInstances(t *testing.T, n int, clk *fakeClock) []*mpauthx.Client {
	t.Helper()
	cs := make([]*mpauthx.Client, n)
	for i := range cs {
		cs[i] = e.client(t, func(cfg *mpauthx.Config) { cfg.Platform = mpauthx.DouyinMiniProgram })
		mpauthx.SetClock(cs[i], clk.now)
	}
	return cs
}

// TestDouyinClientTokenShared: on Douyin, AccessToken is the app's
// client_token, shared like WeChat's access token: eight instances asking
// at once make one client_token call (and no stable_token call), the
// token is sealed in Redis, and a ninth instance adopts it.
func TestDouyinClientTokenShared(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		cs := e.douyinInstances(t, 8, newFakeClock())
		toks := make([]string, len(cs))
		concurrently(len(cs), func(i int) { toks[i] = accessToken(t, cs[i]) })
		if n, m := e.wx.ClientTokenRequests(), e.wx.AccessTokenRequests(); n != 1 || m != 0 {
			t.Errorf("8 Douyin instances made %d client_token and %d stable_token calls, want 1 and 0", n, m)
		}
		want := e.wx.ClientToken()
		for i, tok := range toks {
			if tok != want || !e.wx.ClientTokenValid(tok) {
				t.Errorf("instance %d got %q, want Douyin's client_token %q", i, tok, want)
			}
		}
		if raw := e.rdb.Get(bg, e.appKey("access_token")).Val(); raw == "" || strings.Contains(raw, want) {
			t.Errorf("Redis holds %q, want the client_token sealed", raw)
		}
		late := e.douyinInstances(t, 1, newFakeClock())[0]
		if tok := accessToken(t, late); tok != want || e.wx.ClientTokenRequests() != 1 {
			t.Errorf("a new instance got %q after %d client_token calls, want the shared %q after 1", tok, e.wx.ClientTokenRequests(), want)
		}
	})
}

// TestDouyinClientTokenRejected: Douyin rejects the client_token; eight
// instances renewing it at once make one client_token call, and all take
// its token. A second rejection within 30 s is refused (every fetch ends
// the token before last: no storm), and 30 s later it is renewed again.
func TestDouyinClientTokenRejected(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.douyinInstances(t, 8, clk)
		old := accessToken(t, cs[0])
		for _, c := range cs[1:] {
			accessToken(t, c)
		}
		e.wx.ExpireClientToken()
		toks := make([]string, len(cs))
		concurrently(len(cs), func(i int) {
			var err error
			if toks[i], err = cs[i].RenewAccessToken(bg, old); err != nil {
				t.Errorf("instance %d: RenewAccessToken = %v", i, err)
			}
		})
		if n := e.wx.ClientTokenRequests(); n != 2 {
			t.Errorf("%d client_token calls, want 2 (the first token, one renewal for all)", n)
		}
		now := e.wx.ClientToken()
		for i, tok := range toks {
			if tok == old || tok != now {
				t.Errorf("instance %d renewed to %q, want Douyin's new %q", i, tok, now)
			}
		}
		if n := e.wx.AccessTokenRequests(); n != 0 {
			t.Errorf("%d stable_token calls on Douyin", n)
		}

		_, err := cs[0].RenewAccessToken(bg, now)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "Douyin rejected") || !strings.Contains(err.Error(), "30 s") {
			t.Errorf("a second renewal within 30 s: %v, want 6012 naming the 30 s spacing", err)
		}
		if n := e.wx.ClientTokenRequests(); n != 2 {
			t.Errorf("%d client_token calls after the refused renewal, want 2", n)
		}
		e.advanceWeChat(clk, 31*time.Second)
		e.rdb.Del(bg, e.appKey("force_spacing")) // Redis's 30 s, without waiting
		got, err := cs[1].RenewAccessToken(bg, now)
		if err != nil || got == now || got != e.wx.ClientToken() || e.wx.ClientTokenRequests() != 3 {
			t.Errorf("RenewAccessToken 31 s later = %q, %v after %d client_token calls; want a new token after 3", got, err, e.wx.ClientTokenRequests())
		}
	})
}

// TestDouyinClientTokenRenewal: in its last minutes, one instance fetches
// the next client_token while every caller goes on with the current one,
// which Douyin keeps valid for 5 more minutes.
func TestDouyinClientTokenRenewal(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.douyinInstances(t, 4, clk)
		old := accessToken(t, cs[0])
		for _, c := range cs[1:] {
			accessToken(t, c)
		}
		e.advanceWeChat(clk, mpauthxtest.ClientTokenLifetime-4*time.Minute)
		concurrently(len(cs), func(i int) {
			if tok := accessToken(t, cs[i]); tok != old {
				t.Errorf("instance %d waited for the renewal instead of going on with the valid token", i)
			}
		})
		var next string
		waitFor(t, "the renewal", func() bool {
			next = e.wx.ClientToken()
			return next != old
		})
		for _, c := range cs {
			waitFor(t, "every instance to take the renewed token", func() bool {
				clk.add(100 * time.Millisecond)
				return accessToken(t, c) == next
			})
		}
		if n := e.wx.ClientTokenRequests(); n != 2 {
			t.Errorf("%d client_token calls, want 2 (one per token)", n)
		}
		if !e.wx.ClientTokenValid(old) {
			t.Error("the renewal ended the old token at once")
		}
	})
}

// TestDouyinClientTokenErrors: client_token's error_code is a
// *WeChatError inside 6012, its description redacted of the secret, and a
// wrong secret backs off every instance, as on WeChat.
func TestDouyinClientTokenErrors(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := make([]*mpauthx.Client, 4)
		for i := range cs {
			cs[i] = e.client(t, func(cfg *mpauthx.Config) {
				cfg.Platform = mpauthx.DouyinMiniProgram
				cfg.AppSecret = "not-the-app-secret"
			})
			mpauthx.SetClock(cs[i], clk.now)
		}
		concurrently(4*8, func(i int) {
			for range 5 {
				_, err := cs[i%4].AccessToken(bg)
				var we *mpauthx.WeChatError
				if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !errors.As(err, &we) || we.ErrCode != mpauthxtest.DouyinErrCodeBadClientSecret {
					t.Errorf("AccessToken with a wrong secret = %v, want 6012 wrapping error_code 10013", err)
					return
				}
			}
		})
		if n := e.wx.ClientTokenRequests(); n != 1 {
			t.Errorf("4 instances x 8 callers with a wrong secret made %d client_token calls, want 1", n)
		}
		_, err := cs[0].AccessToken(bg)
		if !strings.Contains(err.Error(), "client_token: error_code 10013 (invalid client_key or client_secret)") {
			t.Errorf("error %q does not name the error_code", err)
		}

		c := e.douyinInstances(t, 1, clk)[0]
		e.wx.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{ErrCode: 10013, ErrMsg: "bad secret " + e.cfg.AppSecret})
		_, err = c.AccessToken(bg)
		var we *mpauthx.WeChatError
		if !errors.As(err, &we) || strings.Contains(err.Error(), e.cfg.AppSecret) || !strings.Contains(we.ErrMsg, "REDACTED") {
			t.Errorf("an error_code echoing the secret: %v, want it redacted", err)
		}
	})
}

// TestDouyinClientTokenProductionHost: with Config.APIBase unset, a Douyin
// Client asks open.douyin.com for its client_token, with Douyin's JSON.
func TestDouyinClientTokenProductionHost(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	var (
		mu   sync.Mutex
		urls []string
		body string
	)
	c := e.client(t, func(cfg *mpauthx.Config) {
		cfg.Platform = mpauthx.DouyinMiniProgram
		cfg.APIBase = ""
		cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			urls = append(urls, r.Method+" "+r.URL.String())
			body = string(b)
			mu.Unlock()
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Request: r,
				Body: io.NopCloser(strings.NewReader(`{"data":{"access_token":"clt.production","description":"","error_code":0,"expires_in":"7200"},"message":"success"}`))}, nil
		})}
	})
	if tok := accessToken(t, c); tok != "clt.production" {
		t.Errorf("AccessToken = %q", tok)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(urls) != 1 || urls[0] != "POST https://open.douyin.com/oauth/client_token/" {
		t.Errorf("requests %q, want one POST https://open.douyin.com/oauth/client_token/", urls)
	}
	for _, want := range []string{`"client_key":"` + e.cfg.AppID + `"`, `"client_secret":"` + e.cfg.AppSecret + `"`, `"grant_type":"client_credential"`} {
		if !strings.Contains(body, want) {
			t.Errorf("body %s lacks %s", body, want)
		}
	}
}

// TestDouyinClientTokenHostileReplies: client_token replies without a
// usable token fail with 6012, and never hand out a token.
func TestDouyinClientTokenHostileReplies(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	clk := newFakeClock()
	c := e.douyinInstances(t, 1, clk)[0]
	for _, body := range []string{
		``,
		`not json`,
		`{}`,
		`{"data":null,"message":"success"}`,
		`{"data":{"access_token":"","error_code":0,"expires_in":7200}}`,
		`{"data":{"access_token":"clt.x","error_code":0,"expires_in":0}}`,
		`{"data":{"access_token":"clt.x","error_code":0,"expires_in":"soon"}}`,
		`{"data":{"access_token":"clt.x","error_code":0,"expires_in":999999}}`,
		`{"data":{"access_token":"clt x","error_code":0,"expires_in":7200}}`,
		`{"data":{"access_token":"clt.x","error_code":"10013","expires_in":7200}}`,
		`{"data":{"access_token":"clt.x","description":"limited","error_code":10020,"expires_in":7200}}`,
	} {
		e.wx.FailNextAt(mpauthxtest.ClientTokenPath, 1, mpauthxtest.Fault{Body: []byte(body)})
		clk.add(time.Minute) // past the back-off
		tok, err := c.AccessToken(bg)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || tok != "" {
			t.Errorf("reply %s: AccessToken = %q, %v; want 6012", body, tok, err)
		}
	}
}

// TestAccessTokenUnsupported: platforms without an app access token
// answer StatusUnsupported.
func TestAccessTokenUnsupported(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	for _, p := range []mpauthx.Platform{mpauthx.QQMiniProgram, mpauthx.WeChatWebsite} {
		c := e.client(t, func(cfg *mpauthx.Config) { cfg.Platform = p })
		if _, err := c.AccessToken(bg); mpauthx.Code(err) != mpauthx.StatusUnsupported {
			t.Errorf("AccessToken on %s = %v, want 6016", p, err)
		}
		if _, err := c.RenewAccessToken(bg, "x"); mpauthx.Code(err) != mpauthx.StatusUnsupported {
			t.Errorf("RenewAccessToken on %s = %v, want 6016", p, err)
		}
	}
	if n := e.wx.AccessTokenRequests() + e.wx.ClientTokenRequests(); n != 0 {
		t.Errorf("%d token requests", n)
	}
}
