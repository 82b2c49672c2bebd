package mpauthx_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestAccessTokenForceRefusedByWeChat: WeChat's count of forced refreshes
// can differ from the one kept in Redis: Redis restarted (or failed over)
// after a forced refresh and forgot it, or another deployment of the app
// forced one. A rejected token is renewed in normal mode first, which
// hands out the token WeChat has moved on to without forcing; when WeChat
// still hands out the rejected token and refuses a forced refresh that
// Redis allowed (45011 within 30 s, 45009 over the day's budget), the
// renewal fails with 6012 naming the refusal.
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

		// Another deployment forces a refresh: normal mode has its
		// token, and this one does not force.
		e.advanceWeChat(clk, time.Minute)
		e.rdb.Del(bg, e.appKey("force_spacing"))
		e.wx.ExpireAccessToken()
		tok, err := cs[1].RenewAccessToken(bg, forced)
		if err != nil || tok == forced || tok != e.wx.AccessToken() {
			t.Errorf("after another deployment's forced refresh, RenewAccessToken = %q, %v; want WeChat's new token %q", tok, err, e.wx.AccessToken())
		}
		if got, err := cs[0].RenewAccessToken(bg, forced); err != nil || got != tok || e.wx.ForcedRefreshes() != 1 {
			t.Errorf("the other instance renews to %q, %v after %d forced refreshes; want the shared %q after 1", got, err, e.wx.ForcedRefreshes(), tok)
		}

		// WeChat still hands out the rejected token and refuses the
		// force: 6012 naming the refusal, wrapping no stale errcode.
		for _, code := range []int{mpauthx.ErrCodeRateLimited, mpauthx.ErrCodeDailyQuota} {
			e.advanceWeChat(clk, time.Minute)
			e.rdb.Del(bg, e.appKey("force_spacing"))
			e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{}) // normal mode: answered
			e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: code})
			_, err = cs[1].RenewAccessToken(bg, tok)
			if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "refused") {
				t.Errorf("errcode %d to the force, with the rejected token handed out again: %v, want 6012 naming the refusal", code, err)
			}
			var we *mpauthx.WeChatError
			if errors.As(err, &we) {
				t.Errorf("error %v wraps errcode %d, want the reason alone", err, we.ErrCode)
			}
		}
		if n := e.wx.ForcedRefreshes(); n != 1 {
			t.Errorf("%d forced refreshes, want 1", n)
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
// it: spent at 23:59:57.9 there, it is whole again at midnight, as soon
// as the 5 s back-off after the refused renewal has passed.
func TestAccessTokenForceBudgetAtMidnight(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		beijing := time.FixedZone("UTC+8", 8*3600)
		now := time.Now().In(beijing)
		// 23:59:57.9 Beijing time today, on the client's clock and WeChat's.
		evening := time.Date(now.Year(), now.Month(), now.Day(), 23, 59, 57, 900e6, beijing)
		clk := &fakeClock{t: evening}
		e.wx.Advance(evening.Sub(now))
		cs := e.instances(t, 2, clk)
		c := cs[0]
		tok := accessToken(t, c)
		if err := e.rdb.Set(bg, e.appKey("force_count:"+evening.Format("20060102")), 20, 48*time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RenewAccessToken(bg, tok); mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "daily budget") {
			t.Fatalf("RenewAccessToken at 23:59:57.9 with the budget spent = %v, want 6012 naming the budget", err)
		}
		e.advanceWeChat(clk, 2*time.Second) // 23:59:59.9
		if _, err := cs[1].RenewAccessToken(bg, tok); mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "daily budget") {
			t.Fatalf("RenewAccessToken on another instance during the back-off = %v, want the shared 6012 naming the budget", err)
		}
		e.advanceWeChat(clk, 3*time.Second) // 00:00:02.9
		got, err := cs[1].RenewAccessToken(bg, tok)
		if err != nil || got == tok || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken at 00:00:02.9 = %q, %v after %d forced refreshes; want a new token after 1", got, err, e.wx.ForcedRefreshes())
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

// TestAccessTokenTwoDeployments: two deployments of one app, each with
// its own Redis, share WeChat's token only through WeChat. After one of
// them forces a refresh, the other's token is rejected: it must take
// WeChat's current token in normal mode rather than force again, or the
// two end each other's token on every call until the day's 20 forced
// refreshes are gone. Calls 31 s apart (past the 30 s spacing, in Redis
// and at WeChat) alternate between them.
func TestAccessTokenTwoDeployments(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		a := e.instances(t, 1, clk)[0]
		otherRedis := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		t.Cleanup(func() { otherRedis.Close() })
		b := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = otherRedis })
		mpauthx.SetClock(b, clk.now)
		u := e.phoneUser("13800138000", "")

		t1 := accessToken(t, a)
		if tok := accessToken(t, b); tok != t1 {
			t.Fatalf("the deployments hold %q and %q, want WeChat's one token", t1, tok)
		}
		// WeChat rejects a token it still hands out: a forces once.
		if t2, err := a.RenewAccessToken(bg, t1); err != nil || t2 == t1 || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken = %q, %v after %d forced refreshes; want a new token after 1", t2, err, e.wx.ForcedRefreshes())
		}
		day := clk.now().In(time.FixedZone("UTC+8", 8*3600)).Format("20060102")
		for i := range 16 {
			e.advanceWeChat(clk, 31*time.Second)
			for _, rdb := range []redis.UniversalClient{e.rdb, otherRedis} { // Redis's 30 s, without waiting
				rdb.Del(bg, e.appKey("force_spacing"))
			}
			c, name := a, "a"
			if i%2 == 0 {
				c, name = b, "b"
			}
			if p, err := c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID)); err != nil || p.PurePhoneNumber != u.Phone {
				t.Fatalf("call %d, on deployment %s: PhoneNumber = %+v, %v", i, name, p, err)
			}
		}
		if n := e.wx.ForcedRefreshes(); n != 1 {
			t.Errorf("16 calls alternating between two deployments made %d forced refreshes, want the first one only", n)
		}
		for _, rdb := range []redis.UniversalClient{e.rdb, otherRedis} {
			if n, _ := rdb.Get(bg, e.appKey("force_count:"+day)).Int(); n > 1 {
				t.Errorf("a Redis counts %d forced refreshes today, want at most 1", n)
			}
		}
	})
}

// TestAccessTokenFailureBackOff: with no valid token and stable_token
// failing (a wrong AppSecret: errcode 40125), 4 instances of 32 callers
// each, calling over and over, make one stable_token call: the failure is
// shared through Redis, and every caller on every instance gets it until
// the back-off has passed. The same holds when the callers renew a
// rejected token.
func TestAccessTokenFailureBackOff(t *testing.T) {
	const instances, callers, calls = 4, 32, 10
	hammer := func(t *testing.T, cs []*mpauthx.Client, call func(c *mpauthx.Client) error, check func(error) bool) {
		t.Helper()
		var bad atomic.Int64
		concurrently(instances*callers, func(i int) {
			for range calls {
				if err := call(cs[i%len(cs)]); !check(err) {
					if bad.Add(1) == 1 {
						t.Errorf("caller %d: %v", i, err)
					}
				}
			}
		})
	}
	wrongSecret := func(err error) bool {
		var we *mpauthx.WeChatError
		return mpauthx.Code(err) == mpauthx.StatusAccessTokenError && errors.As(err, &we) && we.ErrCode == mpauthx.ErrCodeInvalidSecret
	}
	t.Run("no token", func(t *testing.T) {
		forEachRedis(t, nil, func(t *testing.T, e *env) {
			clk := newFakeClock()
			cs := make([]*mpauthx.Client, instances)
			for i := range cs {
				cs[i] = e.client(t, func(cfg *mpauthx.Config) { cfg.AppSecret = "not-the-app-secret" })
				mpauthx.SetClock(cs[i], clk.now)
			}
			hammer(t, cs, func(c *mpauthx.Client) error {
				_, err := c.AccessToken(bg)
				return err
			}, wrongSecret)
			if n := e.wx.AccessTokenRequests(); n != 1 {
				t.Errorf("%d instances x %d callers x %d calls made %d stable_token calls, want 1", instances, callers, calls, n)
			}
			// Past the back-off: one more try, for all.
			clk.add(time.Minute)
			hammer(t, cs, func(c *mpauthx.Client) error {
				_, err := c.AccessToken(bg)
				return err
			}, wrongSecret)
			if n := e.wx.AccessTokenRequests(); n != 2 {
				t.Errorf("after the back-off, %d stable_token calls in all, want 2", n)
			}
		})
	})
	t.Run("rejected", func(t *testing.T) {
		forEachRedis(t, nil, func(t *testing.T, e *env) {
			clk := newFakeClock()
			cs := e.instances(t, instances, clk)
			old := accessToken(t, cs[0])
			for _, c := range cs[1:] {
				accessToken(t, c)
			}
			e.wx.ExpireAccessToken()
			e.wx.FailNextAt(mpauthxtest.StableTokenPath, instances*callers*calls, mpauthxtest.Fault{Status: 500})
			reqs := e.wx.AccessTokenRequests()
			hammer(t, cs, func(c *mpauthx.Client) error {
				_, err := c.RenewAccessToken(bg, old)
				return err
			}, func(err error) bool { return mpauthx.Code(err) == mpauthx.StatusAccessTokenError })
			if n := e.wx.AccessTokenRequests() - reqs; n != 1 {
				t.Errorf("%d instances x %d callers renewing a rejected token made %d stable_token calls, want 1", instances, callers, n)
			}
		})
	})
}

// TestAccessTokenBackOffKeepsValidToken: a renewal that fails in the
// token's last minutes backs off on every instance, and none of them
// goes without the still-valid token meanwhile, not even one started
// during the back-off.
func TestAccessTokenBackOffKeepsValidToken(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 2, clk)
		tok := accessToken(t, cs[0])
		accessToken(t, cs[1])
		e.advanceWeChat(clk, mpauthxtest.AccessTokenLifetime-4*time.Minute)
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 100, mpauthxtest.Fault{Status: 503})
		reqs := e.wx.AccessTokenRequests()
		if got := accessToken(t, cs[0]); got != tok {
			t.Fatalf("AccessToken in the renewal window = %q, want the valid %q", got, tok)
		}
		waitFor(t, "the failed renewal", func() bool {
			return e.rdb.Exists(bg, e.appKey("access_token:failed")).Val() == 1
		})
		late := e.instances(t, 1, clk)[0]
		for range 20 {
			for _, c := range append(cs, late) {
				if got := accessToken(t, c); got != tok {
					t.Fatalf("AccessToken during the back-off = %q, want the valid %q", got, tok)
				}
			}
		}
		if n := e.wx.AccessTokenRequests() - reqs; n != 1 {
			t.Errorf("%d stable_token calls during the back-off, want 1", n)
		}
	})
}

// TestAccessTokenFencing: an instance that stalls holding the refresh
// lock (a GC or VM pause) past its TTL must not write its older token over
// the newer one that another instance forced meanwhile: new instances
// would adopt a token WeChat has ended.
func TestAccessTokenFencing(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		stall := stallFirst(t, e, func(name string, args []any) bool {
			return (name == "set" || name == "evalsha" || name == "eval") && slices.Contains(args, any(e.appKey("access_token")))
		})
		slow := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = stall.rdb })
		mpauthx.SetClock(slow, clk.now)
		cs := e.instances(t, 2, clk)

		got := make(chan string, 1)
		go func() {
			tok, err := slow.AccessToken(bg)
			if err != nil {
				t.Errorf("the stalled instance's AccessToken: %v", err)
			}
			got <- tok
		}()
		<-stall.reached // it fetched t1 and is about to share it
		// Its lock runs out.
		if err := e.rdb.Del(bg, e.appKey("access_token:lock")).Err(); err != nil {
			t.Fatal(err)
		}
		t1 := accessToken(t, cs[0])
		t2, err := cs[0].RenewAccessToken(bg, t1) // WeChat rejects t1: forced
		if err != nil || t2 == t1 || t2 != e.wx.AccessToken() || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken = %q, %v after %d forced refreshes; want WeChat's new token after 1", t2, err, e.wx.ForcedRefreshes())
		}
		stall.release()
		if tok := <-got; tok != t2 {
			t.Errorf("the stalled instance goes on with %q, want the newer shared %q", tok, t2)
		}
		if tok := accessToken(t, cs[1]); tok != t2 {
			t.Errorf("a new instance adopted %q from Redis, want the forced %q (the stalled instance wrote its older token over it)", tok, t2)
		}
	})
}

// TestAccessTokenForceCompares: forceScript forces only while Redis
// still holds the rejected token. An instance that stalled past its lock
// between asking stable_token and deciding to force must take the token
// another instance forced meanwhile, not force again (which would end
// it), even 30 s later.
func TestAccessTokenForceCompares(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		stall := stallFirst(t, e, func(name string, args []any) bool {
			return (name == "evalsha" || name == "eval") && slices.Contains(args, any(e.appKey("force_spacing")))
		})
		slow := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = stall.rdb })
		mpauthx.SetClock(slow, clk.now)
		other := e.instances(t, 1, clk)[0]
		t1 := accessToken(t, slow)
		if tok := accessToken(t, other); tok != t1 {
			t.Fatalf("the instances hold %q and %q", t1, tok)
		}

		got := make(chan string, 1)
		go func() {
			tok, err := slow.RenewAccessToken(bg, t1)
			if err != nil {
				t.Errorf("the stalled instance's RenewAccessToken: %v", err)
			}
			got <- tok
		}()
		<-stall.reached // stable_token handed t1 out again: about to decide to force
		if err := e.rdb.Del(bg, e.appKey("access_token:lock")).Err(); err != nil {
			t.Fatal(err)
		}
		t2, err := other.RenewAccessToken(bg, t1)
		if err != nil || t2 == t1 || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken = %q, %v after %d forced refreshes; want a new token after 1", t2, err, e.wx.ForcedRefreshes())
		}
		// 31 s on: the spacing no longer stands in the way.
		e.advanceWeChat(clk, 31*time.Second)
		e.rdb.Del(bg, e.appKey("force_spacing"))
		stall.release()
		if tok := <-got; tok != t2 || e.wx.ForcedRefreshes() != 1 {
			t.Errorf("the stalled renewal got %q after %d forced refreshes, want the other's %q after 1", tok, e.wx.ForcedRefreshes(), t2)
		}
		if cur := e.wx.AccessToken(); cur != t2 {
			t.Errorf("WeChat's token is %q, want %q still", cur, t2)
		}
	})
}

// TestAccessTokenNoStaleFailure: a renewal failure recorded long ago is
// not replayed. Hours after renewing a token failed, that token is
// rejected while another instance holds the refresh lock (and this one
// had just found it held): RenewAccessToken waits for the lock instead
// of returning the old error.
func TestAccessTokenNoStaleFailure(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		c := e.instances(t, 1, clk)[0]
		x := accessToken(t, c)
		day := clk.now().In(time.FixedZone("UTC+8", 8*3600)).Format("20060102")
		if err := e.rdb.Set(bg, e.appKey("force_count:"+day), 20, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RenewAccessToken(bg, x); mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "daily budget") {
			t.Fatalf("RenewAccessToken with the budget spent = %v, want 6012 naming the budget", err)
		}

		// Hours later, in x's last minutes; another instance renews it.
		e.advanceWeChat(clk, mpauthxtest.AccessTokenLifetime-4*time.Minute)
		if err := e.rdb.Set(bg, e.appKey("access_token:lock"), "another-instance", 300*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		if tok := accessToken(t, c); tok != x {
			t.Fatalf("AccessToken in the renewal window = %q, want the still-valid %q", tok, x)
		}
		if e.mr != nil {
			go func() { // miniredis's clock moves only by hand
				time.Sleep(100 * time.Millisecond)
				e.mr.FastForward(time.Second)
			}()
		}
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		tok, err := c.RenewAccessToken(ctx, x)
		if err != nil || tok == x || tok != e.wx.AccessToken() {
			t.Errorf("RenewAccessToken hours after a failed renewal = %q, %v; want WeChat's next token", tok, err)
		}
	})
}

// stall is a Redis client of a test's backend whose first command
// matching a predicate waits until the test releases it.
type stall struct {
	rdb     redis.UniversalClient
	reached chan struct{} // closed when the matching command is held
	release func()        // lets it go on (also when the test ends)
}

// stallFirst returns a stall on e's Redis holding the first command whose
// lowercased name and arguments match.
func stallFirst(t *testing.T, e *env, match func(name string, args []any) bool) *stall {
	t.Helper()
	var rdb redis.UniversalClient
	switch r := e.rdb.(type) {
	case *redis.Client:
		rdb = redis.NewClient(&redis.Options{Addr: r.Options().Addr})
	case *redis.ClusterClient:
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: r.Options().Addrs})
	default:
		t.Fatalf("cannot copy a %T", e.rdb)
	}
	s := &stall{rdb: rdb, reached: make(chan struct{})}
	gate := make(chan struct{})
	var once, held sync.Once
	s.release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() {
		s.release()
		rdb.Close()
	})
	var taken atomic.Bool
	rdb.AddHook(stallHook(func(ctx context.Context, cmd redis.Cmder) {
		if !match(strings.ToLower(cmd.Name()), cmd.Args()) || !taken.CompareAndSwap(false, true) {
			return
		}
		held.Do(func() { close(s.reached) })
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}))
	return s
}

// stallHook is a go-redis hook calling itself before each command.
type stallHook func(ctx context.Context, cmd redis.Cmder)

func (h stallHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h stallHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(ctx, cmd)
		return next(ctx, cmd)
	}
}

func (h stallHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h(ctx, cmd)
		}
		return next(ctx, cmds)
	}
}
