package mpauthx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// fakeClock is a clock a test moves on by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// advance moves both the fake WeChat's clock and clk on by d.
func (e *env) advanceWeChat(clk *fakeClock, d time.Duration) {
	e.wx.Advance(d)
	clk.add(d)
}

// instances returns n Clients of e's app on e's Redis and database, as n
// servers of one deployment would have, all reading clk.
func (e *env) instances(t *testing.T, n int, clk *fakeClock) []*mpauthx.Client {
	t.Helper()
	cs := make([]*mpauthx.Client, n)
	for i := range cs {
		cs[i] = e.client(t, func(cfg *mpauthx.Config) {
			if testing.Verbose() {
				cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			}
		})
		mpauthx.SetClock(cs[i], clk.now)
	}
	return cs
}

// appKey is the documented Redis key of the app's access token, or of
// one of its companions when suffix is not empty.
func (e *env) appKey(suffix string) string {
	return "mpauthx:{app:" + e.wx.AppID + "}:" + suffix
}

// accessToken calls AccessToken and fails the test on error.
func accessToken(t *testing.T, c *mpauthx.Client) string {
	t.Helper()
	tok, err := c.AccessToken(bg)
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	return tok
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// concurrently runs f(i) for i in [0, n) on n goroutines released at
// once, and waits for them.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// cmdCounter is a go-redis hook counting the commands sent.
type cmdCounter struct{ n atomic.Int64 }

func (h *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestAccessTokenShared: eight instances asking at once make one
// stable_token call, share its token through Redis (sealed there), and
// then ask Redis and WeChat nothing more.
func TestAccessTokenShared(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		cs := e.instances(t, 8, newFakeClock())
		toks := make([]string, len(cs))
		concurrently(len(cs), func(i int) { toks[i] = accessToken(t, cs[i]) })
		if n := e.wx.AccessTokenRequests(); n != 1 {
			t.Errorf("8 instances made %d stable_token calls, want 1", n)
		}
		want := e.wx.AccessToken()
		for i, tok := range toks {
			if tok != want {
				t.Errorf("instance %d got %q, want WeChat's current token %q", i, tok, want)
			}
		}
		raw, err := e.rdb.Get(bg, e.appKey("access_token")).Result()
		if err != nil {
			t.Fatalf("GET the shared token: %v", err)
		}
		if strings.Contains(raw, want) {
			t.Error("Redis holds the access token in clear")
		}
		if ttl := e.rdb.PTTL(bg, e.appKey("access_token")).Val(); ttl <= 0 || ttl > mpauthxtest.AccessTokenLifetime {
			t.Errorf("shared token's PTTL = %v, want within its lifetime", ttl)
		}

		// Warm: no Redis command, no HTTP request, no allocation.
		hook := &cmdCounter{}
		e.rdb.AddHook(hook)
		reqs := e.wx.AccessTokenRequests()
		allocs := testing.AllocsPerRun(1000, func() {
			for _, c := range cs {
				if tok, err := c.AccessToken(bg); err != nil || tok != want {
					t.Fatalf("AccessToken = %q, %v", tok, err)
				}
			}
		})
		if n := hook.n.Load(); n != 0 {
			t.Errorf("warm AccessToken sent %d Redis commands, want 0", n)
		}
		if n := e.wx.AccessTokenRequests() - reqs; n != 0 {
			t.Errorf("warm AccessToken made %d stable_token calls, want 0", n)
		}
		if allocs != 0 {
			t.Errorf("warm AccessToken allocates %v times per 8 calls, want 0", allocs)
		}

		// A ninth instance started later adopts the shared token from Redis.
		late := e.instances(t, 1, newFakeClock())[0]
		if tok := accessToken(t, late); tok != want || e.wx.AccessTokenRequests() != 1 {
			t.Errorf("a new instance got %q after %d stable_token calls, want the shared %q after 1", tok, e.wx.AccessTokenRequests(), want)
		}
	})
}

// TestAccessTokenRenewal: in its last minutes the token is renewed by one
// instance while every caller goes on with the current one, valid until
// it ends.
func TestAccessTokenRenewal(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 8, clk)
		old := accessToken(t, cs[0])
		for _, c := range cs[1:] {
			accessToken(t, c)
		}
		e.advanceWeChat(clk, time.Hour)
		concurrently(len(cs), func(i int) {
			if tok := accessToken(t, cs[i]); tok != old {
				t.Errorf("an hour in, instance %d got a new token", i)
			}
		})
		if n := e.wx.AccessTokenRequests(); n != 1 {
			t.Fatalf("%d stable_token calls an hour in, want 1", n)
		}

		// 4 minutes before the end: WeChat hands out the next token.
		e.advanceWeChat(clk, mpauthxtest.AccessTokenLifetime-time.Hour-4*time.Minute)
		concurrently(len(cs), func(i int) {
			if tok := accessToken(t, cs[i]); tok != old {
				t.Errorf("instance %d waited for the renewal instead of going on with the valid token", i)
			}
		})
		// The instances that found the renewal under way look at Redis
		// again a second later.
		var next string
		waitFor(t, "the renewal", func() bool {
			next = e.wx.AccessToken()
			return next != old
		})
		for _, c := range cs {
			waitFor(t, "every instance to take the renewed token", func() bool {
				clk.add(100 * time.Millisecond)
				return accessToken(t, c) == next
			})
		}
		if n := e.wx.AccessTokenRequests(); n != 2 {
			t.Errorf("%d stable_token calls after the renewal, want 2 (one per token)", n)
		}
		if n := e.wx.ForcedRefreshes(); n != 0 {
			t.Errorf("%d forced refreshes, want 0", n)
		}
	})
}

// TestAccessTokenRejected: WeChat ends the token; eight instances hitting
// errcode 40001 at once cause one renewal, in normal mode (stable_token
// hands out WeChat's next token: no forced refresh), and every call
// succeeds. When WeChat rejects a token it still hands out, eight
// instances renewing it at once cause one forced refresh.
func TestAccessTokenRejected(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		cs := e.instances(t, 8, newFakeClock())
		users := make([]mpauthxtest.User, len(cs))
		for i := range users {
			u := e.user("phone")
			u.Phone = "1380013800" + string(rune('0'+i))
			users[i] = e.wx.AddUser(u)
		}
		old := accessToken(t, cs[0])
		for _, c := range cs[1:] {
			accessToken(t, c)
		}
		e.wx.ExpireAccessToken()
		concurrently(len(cs), func(i int) {
			p, err := cs[i].PhoneNumber(bg, e.wx.PhoneCode(users[i].OpenID))
			if err != nil || p.PurePhoneNumber != users[i].Phone {
				t.Errorf("instance %d: PhoneNumber = %+v, %v; want %s", i, p, err, users[i].Phone)
			}
		})
		if n, m := e.wx.AccessTokenRequests(), e.wx.ForcedRefreshes(); n != 2 || m != 0 {
			t.Errorf("%d stable_token calls, %d forced; want 2 (the first token, its successor in normal mode), none forced", n, m)
		}
		now := e.wx.AccessToken()
		for i, c := range cs {
			if tok := accessToken(t, c); tok != now || tok == old {
				t.Errorf("instance %d holds %q, want WeChat's new token", i, tok)
			}
		}

		// RenewAccessToken of the token already replaced is the
		// replacement, without asking WeChat.
		tok, err := cs[0].RenewAccessToken(bg, old)
		if err != nil || tok != now || e.wx.AccessTokenRequests() != 2 {
			t.Errorf("RenewAccessToken(old) = %q, %v after %d stable_token calls; want the current token after 2", tok, err, e.wx.AccessTokenRequests())
		}
		if _, err := cs[0].RenewAccessToken(bg, ""); mpauthx.Code(err) != mpauthx.StatusRequiredParamsMissing {
			t.Errorf(`RenewAccessToken("") = %v, want 6001`, err)
		}

		// WeChat rejects the token it hands out: one forced refresh.
		toks := make([]string, len(cs))
		concurrently(len(cs), func(i int) {
			var err error
			if toks[i], err = cs[i].RenewAccessToken(bg, now); err != nil {
				t.Errorf("instance %d: RenewAccessToken = %v", i, err)
			}
		})
		if n := e.wx.ForcedRefreshes(); n != 1 {
			t.Errorf("%d forced refreshes, want 1", n)
		}
		for i, tok := range toks {
			if tok == now || tok != e.wx.AccessToken() {
				t.Errorf("instance %d renewed to %q, want WeChat's forced token", i, tok)
			}
		}
	})
}

// TestAccessTokenForceLimits: forced refreshes keep WeChat's limits for
// all instances (30 s apart, 20 a day, counted in Redis); over them, a
// rejected token is replaced only if WeChat has moved on.
func TestAccessTokenForceLimits(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		cs := e.instances(t, 2, clk)
		t1 := accessToken(t, cs[0])

		// WeChat rejects a token it still hands out: forced.
		t2, err := cs[0].RenewAccessToken(bg, t1)
		if err != nil || t2 == t1 || t2 != e.wx.AccessToken() || e.wx.ForcedRefreshes() != 1 {
			t.Fatalf("RenewAccessToken = %q, %v after %d forced refreshes; want a new token after 1", t2, err, e.wx.ForcedRefreshes())
		}
		if tok := accessToken(t, cs[1]); tok != t2 {
			t.Errorf("the other instance got %q, want the forced one", tok)
		}

		// Again within 30 s, from the other instance: refused in Redis,
		// and normal mode hands out the same token: 6012.
		_, err = cs[1].RenewAccessToken(bg, t2)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "30 s") {
			t.Errorf("a second forced refresh within 30 s: %v, want 6012 naming the 30 s spacing", err)
		}
		if n := e.wx.ForcedRefreshes(); n != 1 {
			t.Errorf("%d forced refreshes, want 1", n)
		}
		// ... unless WeChat has moved on: normal mode then replaces it,
		// once the retry delay of the refused renewal has passed.
		e.wx.ExpireAccessToken()
		e.advanceWeChat(clk, 5*time.Second)
		t3, err := cs[1].RenewAccessToken(bg, t2)
		if err != nil || t3 == t2 || t3 != e.wx.AccessToken() || e.wx.ForcedRefreshes() != 1 {
			t.Errorf("RenewAccessToken of an ended token within 30 s = %q, %v after %d forced refreshes; want WeChat's new token without forcing", t3, err, e.wx.ForcedRefreshes())
		}

		// 30 s later it may force again.
		if err := e.rdb.Del(bg, e.appKey("force_spacing")).Err(); err != nil { // Redis's 30 s, without waiting
			t.Fatal(err)
		}
		e.advanceWeChat(clk, 31*time.Second)
		t4, err := cs[1].RenewAccessToken(bg, t3)
		if err != nil || t4 == t3 || e.wx.ForcedRefreshes() != 2 {
			t.Errorf("RenewAccessToken 31 s later = %v after %d forced refreshes, want a new token after 2", err, e.wx.ForcedRefreshes())
		}

		// The day's budget used up: refused.
		if err := e.rdb.Del(bg, e.appKey("force_spacing")).Err(); err != nil {
			t.Fatal(err)
		}
		day := clk.now().In(time.FixedZone("UTC+8", 8*3600)).Format("20060102")
		if n := e.rdb.Get(bg, e.appKey("force_count:"+day)).Val(); n != "2" {
			t.Errorf("force_count:%s = %q, want 2", day, n)
		}
		if err := e.rdb.Set(bg, e.appKey("force_count:"+day), 20, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		_, err = cs[1].RenewAccessToken(bg, t4)
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !strings.Contains(err.Error(), "daily budget") {
			t.Errorf("a forced refresh over the daily budget: %v, want 6012 naming the budget", err)
		}
		if n := e.wx.ForcedRefreshes(); n != 2 {
			t.Errorf("%d forced refreshes, want 2", n)
		}
	})
}

// TestAccessTokenWeChatFaults: WeChat down or slow during a renewal does
// not stop callers while the token is valid; with no valid token left
// they get 6012 wrapping the cause, and it heals.
func TestAccessTokenWeChatFaults(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		clk := newFakeClock()
		c := e.instances(t, 1, clk)[0]

		// No token at all and WeChat down: 6012 wrapping the HTTP error.
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Status: 500})
		_, err := c.AccessToken(bg)
		var inner *mpauthx.Error
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPError {
			t.Errorf("AccessToken with WeChat answering 500 = %v, want 6012 wrapping 6002", err)
		}
		// An errcode is a *WeChatError inside.
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: 40013})
		clk.add(10 * time.Second) // past the retry delay
		_, err = c.AccessToken(bg)
		var we *mpauthx.WeChatError
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !errors.As(err, &we) || we.ErrCode != 40013 {
			t.Errorf("AccessToken with errcode 40013 = %v, want 6012 wrapping it", err)
		}
		// Slow: the caller's ctx ends first.
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Delay: 2 * time.Second})
		clk.add(10 * time.Second)
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		_, err = c.AccessToken(ctx)
		cancel()
		if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("AccessToken with WeChat slow = %v, want 6012 wrapping DeadlineExceeded", err)
		}
		// Healed (once the slow refresh, which kept its own time, ends).
		var tok string
		waitFor(t, "a token after the faults", func() bool {
			clk.add(10 * time.Second)
			tok, err = c.AccessToken(bg)
			return err == nil
		})

		// In the renewal window with WeChat down or slow: the valid token.
		e.advanceWeChat(clk, mpauthxtest.AccessTokenLifetime-4*time.Minute)
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 3, mpauthxtest.Fault{Status: 503})
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Delay: 300 * time.Millisecond})
		for range 50 {
			if got := accessToken(t, c); got != tok {
				t.Fatalf("AccessToken during a failing renewal = %q, want the still-valid %q", got, tok)
			}
			clk.add(time.Second)
		}
		// Ended with no successor: 6012 ... then healed.
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Status: 500})
		e.advanceWeChat(clk, 5*time.Minute)
		waitFor(t, "a new token", func() bool {
			clk.add(10 * time.Second)
			got, err := c.AccessToken(bg)
			return err == nil && got != tok && got == e.wx.AccessToken()
		})
	})
}

// TestAccessTokenLockHolderDies: an instance that dies holding the
// refresh lock blocks the others only until the lock's TTL.
func TestAccessTokenLockHolderDies(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		if err := e.rdb.Set(bg, e.appKey("access_token:lock"), "dead-instance", 300*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		c := e.instances(t, 1, newFakeClock())[0]
		if e.mr != nil {
			go func() { // miniredis's clock moves only by hand
				time.Sleep(100 * time.Millisecond)
				e.mr.FastForward(time.Second)
			}()
		}
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		tok, err := c.AccessToken(ctx)
		if err != nil || tok != e.wx.AccessToken() {
			t.Fatalf("AccessToken behind a dead instance's lock = %q, %v", tok, err)
		}
		if n := e.wx.AccessTokenRequests(); n != 1 {
			t.Errorf("%d stable_token calls, want 1", n)
		}
		if e.rdb.Exists(bg, e.appKey("access_token:lock")).Val() != 0 {
			t.Error("the refresh lock is still held after the refresh")
		}
	})
}

// TestAccessTokenRedisDown: with Redis down each instance fetches the
// token for itself, never forcing.
func TestAccessTokenRedisDown(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	c := e.client(t, func(cfg *mpauthx.Config) {
		cfg.Redis = nil
		cfg.RedisAddr = dead
		cfg.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	})
	clk := newFakeClock()
	mpauthx.SetClock(c, clk.now)
	tok := accessToken(t, c)
	if tok != e.wx.AccessToken() {
		t.Errorf("AccessToken with Redis down = %q, want WeChat's", tok)
	}
	_, err = c.RenewAccessToken(bg, tok)
	if mpauthx.Code(err) != mpauthx.StatusAccessTokenError || e.wx.ForcedRefreshes() != 0 {
		t.Errorf("RenewAccessToken with Redis down = %v after %d forced refreshes; want 6012 without forcing", err, e.wx.ForcedRefreshes())
	}
	e.wx.ExpireAccessToken()
	e.advanceWeChat(clk, 5*time.Second) // past the retry delay of the failed renewal
	if got, err := c.RenewAccessToken(bg, tok); err != nil || got == tok {
		t.Errorf("RenewAccessToken of an ended token with Redis down = %q, %v; want WeChat's new one", got, err)
	}
	if !strings.Contains(logs.String(), "Redis failed") {
		t.Errorf("no log line about Redis: %s", logs.String())
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestAccessTokenSecrets: neither the app secret nor the access token
// reaches an error or a log line, even when WeChat echoes them or the
// request's URL (which carries the token) fails.
func TestAccessTokenSecrets(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		var logs bytes.Buffer
		c := e.client(t, func(cfg *mpauthx.Config) {
			cfg.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		clk := newFakeClock()
		mpauthx.SetClock(c, clk.now)
		var errs []error
		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: 40125, ErrMsg: "invalid appsecret " + e.cfg.AppSecret + " " + strings.Repeat("x", 300)})
		_, err := c.AccessToken(bg)
		errs = append(errs, err)
		var we *mpauthx.WeChatError
		if !errors.As(err, &we) || !strings.Contains(we.ErrMsg, "REDACTED") {
			t.Errorf("errmsg echoing the secret: %v, want it redacted", err)
		}
		clk.add(time.Minute) // past the retry delay
		tok := accessToken(t, c)
		u := e.wx.AddUser(mpauthxtest.User{OpenID: "o-secret", Phone: "13800138000"})
		for _, path := range []string{mpauthxtest.PhoneNumberPath, mpauthxtest.CheckSessionPath} {
			e.wx.FailNextAt(path, 1, mpauthxtest.Fault{ErrCode: 40097, ErrMsg: "bad access_token=" + tok})
			e.wx.FailNextAt(path, 1, mpauthxtest.Fault{Delay: 5 * time.Second})
		}
		_, err = c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID))
		errs = append(errs, err)
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		_, err = c.PhoneNumber(ctx, e.wx.PhoneCode(u.OpenID))
		cancel()
		errs = append(errs, err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("PhoneNumber with WeChat slow = %v, want DeadlineExceeded inside", err)
		}
		if _, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		_, err = c.CheckSessionKey(bg, u.OpenID)
		errs = append(errs, err)
		ctx, cancel = context.WithTimeout(bg, 50*time.Millisecond)
		_, err = c.CheckSessionKey(ctx, u.OpenID)
		cancel()
		errs = append(errs, err)
		for i, err := range errs {
			if err == nil {
				t.Errorf("call %d succeeded, want a failure", i)
				continue
			}
			for _, secret := range []string{e.cfg.AppSecret, tok, strings.ReplaceAll(tok, "+", "%2B")} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %d holds a secret: %v", i, err)
				}
			}
		}
		for _, secret := range []string{e.cfg.AppSecret, tok, strings.ReplaceAll(tok, "+", "%2B")} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the log holds a secret:\n%s", logs.String())
			}
		}
	})
}

// TestAccessTokenClosed: after Close, AccessToken and RenewAccessToken
// fail with ErrClosed.
func TestAccessTokenClosed(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	c := e.client(t, func(*mpauthx.Config) {})
	accessToken(t, c)
	c.Close()
	if _, err := c.AccessToken(bg); !errors.Is(err, mpauthx.ErrClosed) {
		t.Errorf("AccessToken after Close = %v, want ErrClosed", err)
	}
	if _, err := c.RenewAccessToken(bg, "x"); !errors.Is(err, mpauthx.ErrClosed) {
		t.Errorf("RenewAccessToken after Close = %v, want ErrClosed", err)
	}
}

// BenchmarkAccessToken measures the warm path, which costs no round trip
// and no allocation: one atomic load and a clock read.
func BenchmarkAccessToken(b *testing.B) {
	for _, r := range benchRedises(b) {
		b.Run(r.name, func(b *testing.B) {
			w := newBenchWorld(b, r.rdb, 0)
			// A token left by an earlier run is of a fake WeChat that is gone.
			key := "mpauthx:{app:" + w.wx.AppID + "}:access_token"
			r.rdb.Del(bg, key)
			b.Cleanup(func() { r.rdb.Del(bg, key) })
			want, err := w.c.AccessToken(bg)
			if err != nil {
				b.Fatal(err)
			}
			reqs := w.wx.AccessTokenRequests()
			parallelCalls(b, func(int) error {
				tok, err := w.c.AccessToken(bg)
				if err == nil && tok != want {
					err = errors.New("AccessToken changed")
				}
				return err
			})
			b.StopTimer()
			if n := w.wx.AccessTokenRequests() - reqs; n != 0 {
				b.Errorf("%d stable_token calls while warm, want 0", n)
			}
		})
	}
}

// TestAccessTokenCloseDuringRefresh: Close ends a refresh in flight, and
// the caller waiting for it gets ErrClosed.
func TestAccessTokenCloseDuringRefresh(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	c := e.client(t, func(*mpauthx.Config) {})
	e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{Delay: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, err := c.AccessToken(bg)
		errc <- err
	}()
	waitFor(t, "the stable_token request", func() bool { return e.wx.AccessTokenRequests() == 1 })
	c.Close()
	if err := <-errc; !errors.Is(err, mpauthx.ErrClosed) {
		t.Errorf("AccessToken waiting for a refresh that Close ended = %v, want ErrClosed", err)
	}
}
