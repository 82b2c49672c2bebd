package mpauthx_test

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/seeda8e74ca0/mpauthx"
)

// The tests of Config.LocalCache. The cache runs on a real Redis (a
// *redis.Client); on miniredis and a Ring it is off, and the same tests
// check that the answers are the same as without it. They run on every
// backend of forEachRedis and, when MPAUTHX_REDIS_ADDR is unset, on a
// redis-server of their own when one is in PATH (cacheBackends). "Stops
// validating" is polled for, with a hang guard far above the documented
// bound, which the benchmarks measure (docs/localcache.md); the fault tests
// (localcache_faults_test.go) assert the bound itself.

// cacheHang is how long a test waits for something that takes well under
// a second, before it fails instead of hanging.
const cacheHang = 10 * time.Second

// cacheSize is the LocalCache of the tests' Clients.
const cacheSize = 1000

// withCache turns the local cache on.
func withCache(cfg *mpauthx.Config) { cfg.LocalCache = cacheSize }

// caches reports whether e's Clients run a local cache: on a real Redis
// behind a *redis.Client, or a Redis Cluster.
func caches(e *env) bool {
	switch e.rdb.(type) {
	case *redis.Client:
		return e.mr == nil
	case *redis.ClusterClient:
		return true
	}
	return false
}

// cacheBackends lists the backends of the cache's tests: backends(), and a
// redis-server of each test's own when MPAUTHX_REDIS_ADDR is unset and
// redis-server is in PATH.
func cacheBackends() []backend {
	bs := backends()
	if own, ok := ownRedisBackend(); ok {
		bs = append(bs, own)
	}
	return bs
}

// forEachCacheRedis is forEachRedis on cacheBackends.
func forEachCacheRedis(t *testing.T, tweak func(*mpauthx.Config), f func(t *testing.T, e *env)) {
	t.Helper()
	forEachRedis(t, tweak, f)
	if own, ok := ownRedisBackend(); ok {
		t.Run(own.name, func(t *testing.T) {
			f(t, newEnv(t, own, tweak))
		})
	}
}

// pollUntil calls cond until it holds, and fails the test if it does not
// within cacheHang.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(cacheHang); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v", what, cacheHang)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkOf returns the IsTokenValid of c as a func, failing the test on
// error.
func checkOf(t *testing.T, c *mpauthx.Client) func(token string) bool {
	return func(token string) bool {
		t.Helper()
		ok, err := c.IsTokenValid(bg, token)
		if err != nil {
			t.Fatalf("IsTokenValid: %v", err)
		}
		return ok
	}
}

// held checks token on c until c's cache answers it without Redis, when
// the cache runs; the token must stay valid meanwhile.
func held(t *testing.T, e *env, c *mpauthx.Client, token string) {
	t.Helper()
	valid := checkOf(t, c)
	if !valid(token) {
		t.Fatal("a live token is not valid")
	}
	if !caches(e) {
		return
	}
	pollUntil(t, "held by the local cache", func() bool {
		if !valid(token) {
			t.Fatal("a live token is not valid")
		}
		return mpauthx.CacheHolds(c, token)
	})
}

// TestLocalCachePropagation checks that a token revoked, refreshed or
// expired stops validating on another instance whose cache held it, and
// at once on the instance that revoked or refreshed it.
func TestLocalCachePropagation(t *testing.T) {
	forEachCacheRedis(t, withCache, func(t *testing.T, e *env) {
		a, b := e.c, e.client(t, withCache)
		aValid, bValid := checkOf(t, a), checkOf(t, b)
		u := e.user("ann")

		t.Run("revoke", func(t *testing.T) {
			tok := e.login(t, u)
			held(t, e, a, tok)
			held(t, e, b, tok)
			if err := a.RevokeToken(bg, tok); err != nil {
				t.Fatal(err)
			}
			if aValid(tok) {
				t.Error("the revoking instance still says true")
			}
			pollUntil(t, "false on the other instance", func() bool { return !bValid(tok) })
			if mpauthx.CacheHolds(b, tok) {
				t.Error("the other instance still holds the revoked token")
			}
		})
		t.Run("refresh", func(t *testing.T) {
			old := e.login(t, u)
			held(t, e, a, old)
			held(t, e, b, old)
			res, err := a.RefreshToken(bg, u.OpenID)
			if err != nil {
				t.Fatal(err)
			}
			if aValid(old) {
				t.Error("the refreshing instance still says true for the old token")
			}
			pollUntil(t, "false on the other instance", func() bool { return !bValid(old) })
			held(t, e, b, res.Response)
			held(t, e, a, res.Response)
		})
		t.Run("revoked by hand", func(t *testing.T) { // an operator's DEL
			tok := e.login(t, u)
			held(t, e, b, tok)
			if err := e.rdb.Del(bg, e.key(u.OpenID)).Err(); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, "false after DEL", func() bool { return !bValid(tok) })
		})
	})
}

// TestLocalCacheExpiry checks that a cached token stops validating no
// later than its key expires, without waiting for Redis, which reclaims
// expired keys lazily.
func TestLocalCacheExpiry(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	forEachCacheRedis(t, func(cfg *mpauthx.Config) { withCache(cfg); cfg.TokenTTL = ttl }, func(t *testing.T, e *env) {
		b := e.client(t, func(cfg *mpauthx.Config) { withCache(cfg); cfg.TokenTTL = ttl })
		tok := e.login(t, e.user("bob"))
		// After the login: the key's expiry, in Redis's whole milliseconds,
		// is before issued+ttl, and Redis keeps a key through the
		// millisecond of its expiry: it is gone 1 ms after issued+ttl at
		// the latest (a login that returned within 1 ms of its write made
		// this test fail now and then without that millisecond).
		issued := time.Now()
		held(t, e, b, tok)
		if e.mr != nil {
			e.mr.FastForward(ttl)
		} else {
			time.Sleep(time.Until(issued.Add(ttl + time.Millisecond)))
		}
		if checkOf(t, b)(tok) {
			t.Error("an expired token is valid")
		}
		if checkOf(t, e.c)(tok) {
			t.Error("an expired token is valid on the instance that issued it")
		}
	})
}

// TestLocalCacheOnlyLiveTokens checks that the cache holds live tokens
// only: forged, unknown, revoked and random tokens are answered false,
// add no entry and evict none, and the cache stays within LocalCache
// entries however many live tokens are checked.
func TestLocalCacheOnlyLiveTokens(t *testing.T) {
	const size = 64
	tweak := func(cfg *mpauthx.Config) { cfg.LocalCache = size }
	forEachCacheRedis(t, tweak, func(t *testing.T, e *env) {
		c := e.c
		valid := checkOf(t, c)
		var live []string
		for i := range size / 2 {
			live = append(live, e.login(t, e.user(fmt.Sprint("live", i))))
		}
		for _, tok := range live {
			held(t, e, c, tok)
		}
		heldBefore := countHeld(c, live)
		if caches(e) && heldBefore != len(live) {
			t.Fatalf("the cache holds %d of %d live tokens", heldBefore, len(live))
		}
		sku := e.cfg.Sku
		for i := range 2000 {
			var tok string
			switch i % 4 {
			case 0: // a live user, a forged session
				tok = c.ExtractOpenID(live[i%len(live)]) + "|" + sku + "|" + rand.Text()
			case 1: // an unknown user
				tok = "o" + rand.Text() + "|" + sku + "|" + rand.Text()
			case 2: // another Sku
				tok = c.ExtractOpenID(live[i%len(live)]) + "|other-sku|" + rand.Text()
			default: // random bytes
				tok = rand.Text() + "|" + rand.Text()
			}
			if valid(tok) {
				t.Fatalf("a made-up token is valid: %q", tok)
			}
		}
		if n := mpauthx.CacheLen(c); caches(e) && n != len(live) {
			t.Errorf("after the flood the cache has %d entries, want the %d live ones", n, len(live))
		}
		if n := countHeld(c, live); n != heldBefore {
			t.Errorf("the flood evicted live tokens: %d held, %d before", n, heldBefore)
		}
		// More live tokens than the cache holds: all valid, the cache full.
		for i := range 3 * size {
			tok := e.login(t, e.user(fmt.Sprint("more", i)))
			live = append(live, tok)
		}
		for range 3 {
			for _, tok := range live {
				if !valid(tok) {
					t.Fatal("a live token is not valid")
				}
			}
			if n := mpauthx.CacheLen(c); n > size {
				t.Fatalf("the cache has %d entries, more than LocalCache %d", n, size)
			}
		}
		if n := mpauthx.CacheLen(c); caches(e) && n == 0 {
			t.Error("the cache holds nothing")
		}
	})
}

// TestLocalCacheForgedRevokes checks that RevokeToken of made-up tokens
// (a logout endpoint that revokes whatever token it is sent, fed forged
// tokens of known user IDs) evicts no live entry: Redis did not change,
// so the cache must not either.
func TestLocalCacheForgedRevokes(t *testing.T) {
	forEachCacheRedis(t, withCache, func(t *testing.T, e *env) {
		c := e.c
		var live []string
		for i := range 8 {
			tok := e.login(t, e.user(fmt.Sprint("victim", i)))
			held(t, e, c, tok)
			live = append(live, tok)
		}
		for _, tok := range live {
			for _, forged := range []string{
				c.ExtractOpenID(tok) + "|" + e.cfg.Sku + "|" + rand.Text(), // another session
				c.ExtractOpenID(tok) + "|other-sku|" + rand.Text(),         // another Sku
			} {
				if err := c.RevokeToken(bg, forged); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n := countHeld(c, live); caches(e) && n != len(live) {
			t.Errorf("forged revokes evicted live tokens: %d of %d held", n, len(live))
		}
		for _, tok := range live {
			if !checkOf(t, c)(tok) {
				t.Fatal("a forged revoke ended a live token")
			}
		}
	})
}

// countHeld counts the tokens c's cache answers.
func countHeld(c *mpauthx.Client, tokens []string) int {
	n := 0
	for _, tok := range tokens {
		if mpauthx.CacheHolds(c, tok) {
			n++
		}
	}
	return n
}

// TestLocalCacheChurn checks a cached Client against an uncached one
// while many goroutines log in, refresh, revoke and check: once the
// writes stop, the cached Client agrees with the uncached one on every
// token ever issued (it may lag behind by the documented bound before).
func TestLocalCacheChurn(t *testing.T) {
	forEachCacheRedis(t, withCache, func(t *testing.T, e *env) {
		cached := e.client(t, withCache)
		plain := e.client(t, func(cfg *mpauthx.Config) { cfg.LocalCache = 0 })
		const (
			users   = 16
			workers = 8
			ops     = 150
		)
		us := make([]string, users)
		var mu sync.Mutex
		var tokens []string
		for i := range us {
			u := e.user(fmt.Sprint("churn", i))
			us[i] = u.OpenID
			tokens = append(tokens, e.login(t, u))
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := range ops {
					n, _ := rand.Int(rand.Reader, big.NewInt(1<<30))
					r := int(n.Int64())
					mu.Lock()
					tok := tokens[r%len(tokens)]
					mu.Unlock()
					var err error
					switch (w + i) % 8 {
					case 0:
						var res mpauthx.Result
						if res, err = e.c.RefreshToken(bg, us[r%users]); err == nil {
							mu.Lock()
							tokens = append(tokens, res.Response)
							mu.Unlock()
						}
					case 1:
						err = e.c.RevokeToken(bg, tok)
					case 2:
						var res mpauthx.Result
						if res, err = e.c.AuthorizeCode(bg, e.wx.Code(us[r%users])); err == nil {
							mu.Lock()
							tokens = append(tokens, res.Response)
							mu.Unlock()
						}
					default:
						_, err = cached.IsTokenValid(bg, tok)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		agree := func() (bool, string) {
			for _, tok := range tokens {
				want, err1 := plain.IsTokenValid(bg, tok)
				got, err2 := cached.IsTokenValid(bg, tok)
				if err1 != nil || err2 != nil {
					t.Fatalf("IsTokenValid: %v, %v", err1, err2)
				}
				if got != want {
					return false, fmt.Sprintf("the cached Client says %v, the uncached one %v", got, want)
				}
			}
			return true, ""
		}
		pollUntil(t, "in agreement with an uncached Client", func() bool { ok, _ := agree(); return ok })
		// Settled: a second pass, with the cache warm, agrees at once.
		if ok, why := agree(); !ok {
			t.Error(why)
		}
		live := map[string]bool{}
		for _, tok := range tokens {
			if checkOf(t, plain)(tok) {
				live[tok] = true
			}
		}
		if len(live) == 0 || len(live) > users {
			t.Errorf("%d live tokens for %d users", len(live), users)
		}
	})
}

// cacheOffLines counts the lines of logs that say, at Warn, that the
// local cache is off.
func cacheOffLines(logs *logBuffer) int {
	n := 0
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "Config.LocalCache is off") {
			n++
		}
	}
	return n
}

// TestLocalCacheOff checks that where Redis cannot track (miniredis) or
// the client is a Ring, a Client with LocalCache works as
// without it and logs once, at Warn, why the cache is off.
func TestLocalCacheOff(t *testing.T) {
	bs := append(cacheBackends(), ringBackend)
	for _, b := range bs {
		if b.name == "redis" || b.name == "redis-server" || b.name == "cluster" {
			continue // it can track
		}
		t.Run(b.name, func(t *testing.T) {
			logger, logs := captureLogs(false)
			e := newEnv(t, b, func(cfg *mpauthx.Config) { withCache(cfg); cfg.Logger = logger })
			pollUntil(t, "logged", func() bool { return cacheOffLines(logs) > 0 })
			valid := checkOf(t, e.c)
			for range 3 {
				tok := e.login(t, e.user("cat"))
				for range 2 { // the second check would be a hit
					if !valid(tok) {
						t.Fatal("a live token is not valid")
					}
				}
				if err := e.c.RevokeToken(bg, tok); err != nil {
					t.Fatal(err)
				}
				if valid(tok) {
					t.Fatal("a revoked token is valid")
				}
			}
			if n := mpauthx.CacheLen(e.c); n > 0 {
				t.Errorf("the cache that is off holds %d entries", n)
			}
			if n := cacheOffLines(logs); n != 1 {
				t.Errorf("%d log lines say the cache is off, want 1:\n%s", n, logs)
			}
			if strings.Contains(logs.String(), "the local cache is on") {
				t.Errorf("a log line says the cache is on:\n%s", logs)
			}
		})
	}
}

// TestLocalCacheCloseLeaksNothing checks that Close stops the cache's
// link and goroutines, on a Redis that tracks and on one that refuses.
func TestLocalCacheCloseLeaksNothing(t *testing.T) {
	for _, b := range cacheBackends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			tok := e.login(t, e.user("dan"))
			checkOf(t, e.c)(tok)
			leaks := goleak.IgnoreCurrent() // e's Client, WeChat and Redis run on
			cfg := e.cfg
			withCache(&cfg)
			c, err := mpauthx.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			held(t, e, c, tok)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			goleak.VerifyNone(t, leaks,
				goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
				goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"))
		})
	}
	t.Run("Redis down", func(t *testing.T) {
		// The link keeps trying to connect: Close stops it all the same.
		e := newWorld(t)
		e.cfg.RedisAddr = closedAddr(t)
		withCache(&e.cfg)
		leaks := goleak.IgnoreCurrent()
		c, err := mpauthx.New(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.IsTokenValid(bg, "o1|"+e.cfg.Sku+"|"+rand.Text()); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
			t.Fatalf("IsTokenValid with Redis down: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		goleak.VerifyNone(t, leaks)
	})
}
