package mpauthx_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestAccessTokenForceRefusedByWeChat: WeChat's count of forced refreshes
// can differ from the one kept in Redis: Redis restarted (or failed over)
// after a forced refresh and forgot it, or another deployment of the app
// forced one. When WeChat refuses a forced refresh that Redis allowed
// (45011 within 30 s, 45009 over the day's budget), the instance takes
// the token WeChat hands out in normal mode, which is the new one if
// WeChat has moved on, rather than failing with 6012.
func TestAccessTokenForceRefusedByWeChat(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 2, clk)
		old := accessToken(t, cs[0])
		if tok := accessToken(t, cs[1]); tok != old {
			t.Fatalf("the instances hold %q and %q", old, tok)
		}
		forced, err := cs[0].RenewAccessToken(bg, old)
		if err != nil || forced == old || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken = %q, %v after %d forced refreshes", forced, err, e.wx.ForcedRefreshes())
		}

		// Redis restarts: the shared token and the record of the forced
		// refresh are gone. The other instance, still holding the old
		// token, is told it is invalid.
		day := clk.now().In(time.FixedZone("UTC+8", 8*3600)).Format("20060102")
		if err := e.rdb.Del(bg, e.appKey("access_token"), e.appKey("force_spacing"), e.appKey("force_count:"+day)).Err(); err != nil {
			t.Fatal(err)
		}
		if tok, err := cs[1].RenewAccessToken(bg, old); err != nil || tok != forced {
			t.Errorf("after Redis forgot the forced refresh, RenewAccessToken = %q, %v; want WeChat's current token %q", tok, err, forced)
		}
		if n := e.wx.ForcedRefreshes(); n != 1 {
			t.Errorf("%d forced refreshes, want 1", n)
		}

		// Another deployment forces a refresh and spends WeChat's budget:
		// this one's force is refused with 45009, normal mode has the
		// token that deployment made.
		e.advanceWeChat(clk, time.Minute)
		e.rdb.Del(bg, e.appKey("force_spacing"))
		e.wx.ExpireAccessToken()
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeDailyQuota})
		tok, err := cs[1].RenewAccessToken(bg, forced)
		if err != nil || tok == forced || tok != e.wx.AccessToken() {
			t.Errorf("with WeChat refusing the force, RenewAccessToken = %q, %v; want WeChat's new token %q", tok, err, e.wx.AccessToken())
		}
		if got, err := cs[0].RenewAccessToken(bg, forced); err != nil || got != tok || e.wx.ForcedRefreshes() != 1 {
			t.Errorf("the other instance renews to %q, %v after %d forced refreshes; want the shared %q after 1", got, err, e.wx.ForcedRefreshes(), tok)
		}

		// Refused, and WeChat still hands out the rejected token: 6012
		// naming the refusal, wrapping no stale errcode.
		e.advanceWeChat(clk, time.Minute)
		e.rdb.Del(bg, e.appKey("force_spacing"))
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeRateLimited})
		_, err = cs[1].RenewAccessToken(bg, tok)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "refused") {
			t.Errorf("refused and handed the rejected token again: %v, want 6012 naming the refusal", err)
		}
		var we *mpauthx.WeChatError
		if errors.As(err, &we) {
			t.Errorf("error %v wraps errcode %d, want the reason alone", err, we.ErrCode)
		}
	})
}

// TestAccessTokenRenewStorm: eight instances, each with eight callers
// renewing the rejected token over and over, while Redis restarts (the
// shared token, the lock and the record of the forced refresh vanish):
// one forced refresh in all, every call gets WeChat's current token, and
// a bounded number of stable_token calls.
func TestAccessTokenRenewStorm(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 8, clk)
		old := accessToken(t, cs[0])
		for _, c := range cs[1:] {
			accessToken(t, c)
		}
		e.wx.ExpireAccessToken() // WeChat ends it: 40001 from now on
		reqs := e.wx.AccessTokenRequests()
		day := clk.now().In(time.FixedZone("UTC+8", 8*3600)).Format("20060102")
		concurrently(len(cs)*8, func(i int) {
			c := cs[i%len(cs)]
			for round := range 5 {
				if i == 0 && round == 2 {
					e.rdb.Del(bg, e.appKey("access_token"), e.appKey("access_token:lock"),
						e.appKey("force_spacing"), e.appKey("force_count:"+day))
				}
				tok, err := c.RenewAccessToken(bg, old)
				if err != nil || tok == old || tok != e.wx.AccessToken() {
					t.Errorf("caller %d, round %d: RenewAccessToken = %q, %v; want WeChat's current token", i, round, tok, err)
					return
				}
			}
		})
		if n := e.wx.ForcedRefreshes(); n > 1 {
			t.Errorf("%d forced refreshes, want at most 1", n)
		}
		if n := e.wx.AccessTokenRequests() - reqs; n > 1+len(cs) {
			t.Errorf("%d stable_token calls for %d instances, want at most %d", n, len(cs), 1+len(cs))
		}
	})
}

// TestAccessTokenForceBudgetAtMidnight: the day's budget of forced
// refreshes is counted per day of Beijing time (UTC+8), as WeChat counts
// it: spent at 23:59:59.9 there, it is whole again at midnight.
func TestAccessTokenForceBudgetAtMidnight(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		beijing := time.FixedZone("UTC+8", 8*3600)
		now := time.Now().In(beijing)
		// 23:59:59.9 Beijing time today, on the client's clock and WeChat's.
		evening := time.Date(now.Year(), now.Month(), now.Day(), 23, 59, 59, 900e6, beijing)
		clk := &fakeClock{t: evening}
		e.wx.Advance(evening.Sub(now))
		cs := e.instances(t, 2, clk)
		c := cs[0]
		tok := accessToken(t, c)
		if err := e.rdb.Set(bg, e.appKey("force_count:"+evening.Format("20060102")), 20, 48*time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RenewAccessToken(bg, tok); mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "daily budget") {
			t.Fatalf("RenewAccessToken at 23:59:59.9 with the budget spent = %v, want 6012 naming the budget", err)
		}
		e.advanceWeChat(clk, 200*time.Millisecond) // 00:00:00.1
		// Another instance: this one waits out its retry delay.
		got, err := cs[1].RenewAccessToken(bg, tok)
		if err != nil || got == tok || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken at 00:00:00.1 = %q, %v after %d forced refreshes; want a new token after 1", got, err, e.wx.ForcedRefreshes())
		}
		if n := e.rdb.Get(bg, e.appKey("force_count:"+clk.now().In(beijing).Format("20060102"))).Val(); n != "1" {
			t.Errorf("the new day's count = %q, want 1", n)
		}
	})
}

// TestAccessTokenPersistentRejection: while WeChat rejects every token
// (40001 on each call, whatever stable_token hands out), the calls fail
// with 6013, and their renewals do not turn into a stable_token call
// each: after a failed renewal of a token, renewals of that same token
// fail at once until the retry delay has passed, on every instance.
func TestAccessTokenPersistentRejection(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 2, clk)
		u := e.phoneUser("13800138000", "")
		accessToken(t, cs[0])
		accessToken(t, cs[1])
		const calls = 40
		e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 2*calls, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeInvalidAccessToken})
		reqs := e.wx.AccessTokenRequests()
		for i := range calls {
			_, err := cs[i%2].PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
			if mpauthx.Code(err) != mpauthx.StatusPhoneNumberError && mpauthx.Code(err) != mpauthx.StatusAccessTokenError {
				t.Fatalf("call %d: %v, want 6013 or 6012", i, err)
			}
		}
		if n := e.wx.AccessTokenRequests() - reqs; n > 4 {
			t.Errorf("%d calls rejected with 40001 made %d stable_token calls, want at most 4", calls, n)
		}
		if n := e.wx.ForcedRefreshes(); n > 1 {
			t.Errorf("%d forced refreshes, want at most 1", n)
		}
		// Past the retry delay, with WeChat healed: answered.
		e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 0, mpauthxtest.Fault{})
		clk.add(time.Minute)
		e.wx.Advance(time.Minute)
		e.rdb.Del(bg, e.appKey("force_spacing"))
		waitFor(t, "the phone number", func() bool {
			p, err := cs[0].PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
			return err == nil && p.PurePhoneNumber == u.Phone
		})
	})
}
