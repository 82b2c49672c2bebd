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
