//go:build unix

package mpauthx_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// The local cache when its link to Redis breaks, on a redis-server of the
// test's own (redisproc_test.go): the cache must stop answering (and
// empty itself when the connection is lost), answer nothing stale, and
// come back once the link does.

// cacheProcEnv starts a redis-server and returns its env with a Client A
// (e.c, Redis dialled by New) and a second instance B, both with a local
// cache, and an admin client for the server.
func cacheProcEnv(t *testing.T) (p *redisProc, e *env, b *mpauthx.Client, admin *redis.Client) {
	t.Helper()
	p = startRedis(t)
	e = newProcWorld(t, p.Addr())
	e.cfg.LocalCache = cacheSize
	openKind(t, e, redisKinds()[0])
	b = e.client(t, func(*mpauthx.Config) {})
	admin = redis.NewClient(&redis.Options{Addr: p.Addr()})
	t.Cleanup(func() { admin.Close() })
	return p, e, b, admin
}

// holdOn checks token on c until c's cache answers it. Checks may fail
// while Redis or the link recover; the token must never be invalid.
func holdOn(t *testing.T, c *mpauthx.Client, token string) {
	t.Helper()
	pollUntil(t, "held by the local cache", func() bool {
		ok, err := c.IsTokenValid(bg, token)
		if err == nil && !ok {
			t.Fatal("a live token is not valid")
		}
		return mpauthx.CacheHolds(c, token)
	})
}

// refusedOn polls c until it says false for token; a check that fails
// (Redis recovering) is not an answer.
func refusedOn(t *testing.T, c *mpauthx.Client, token string) {
	t.Helper()
	pollUntil(t, "refused", func() bool {
		ok, err := c.IsTokenValid(bg, token)
		return err == nil && !ok
	})
}

// revokeSeen logs u in on e.c, waits until b's cache holds the token,
// revokes it on e.c and waits until b refuses it.
func revokeSeen(t *testing.T, e *env, b *mpauthx.Client, u mpauthxtest.User) {
	t.Helper()
	tok := e.login(t, u)
	holdOn(t, b, tok)
	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatal(err)
	}
	refusedOn(t, b, tok)
}

// killLinks closes the local caches' links with CLIENT KILL ID and
// returns how many it closed.
func killLinks(t *testing.T, admin *redis.Client) int {
	t.Helper()
	list, err := admin.ClientList(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " name=mpauthx-localcache ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		if err := admin.Do(bg, "client", "kill", "id", id).Err(); err == nil {
			n++
		}
	}
	return n
}

func TestLocalCacheLinkFaults(t *testing.T) {
	// B's link breaks, and then, while it cannot come back (B's proxy
	// refuses new connections), a token B's cache held is revoked: the
	// invalidation is lost, so B must have emptied its cache when the link
	// broke, refuse the token once its link is back, and hear of the next
	// revocation over the new link. One step after the other: a link that
	// came back before the revoke would hear of it and hide a cache that
	// was not emptied.
	for _, tc := range []struct {
		name      string
		breakLink func(t *testing.T, admin *redis.Client, px *cacheProxy)
	}{
		{"connections cut", func(t *testing.T, _ *redis.Client, px *cacheProxy) { px.cut() }},
		{"links killed by ID", func(t *testing.T, admin *redis.Client, _ *cacheProxy) {
			if n := killLinks(t, admin); n == 0 {
				t.Error("no link to kill")
			}
		}},
		{"CLIENT KILL TYPE pubsub and normal", func(t *testing.T, admin *redis.Client, _ *cacheProxy) {
			for _, typ := range []string{"pubsub", "normal"} {
				if err := admin.Do(bg, "client", "kill", "type", typ).Err(); err != nil {
					t.Error(err)
				}
			}
		}},
	} {
		t.Run(tc.name+", then a token revoked", func(t *testing.T) {
			e, b, px := proxiedCacheEnv(t)
			admin := redis.NewClient(&redis.Options{Addr: e.cfg.RedisAddr})
			t.Cleanup(func() { admin.Close() })
			u := e.user("eve")
			tok := e.login(t, u)
			holdOn(t, b, tok)
			ups := mpauthx.CacheLinkUps(b)
			px.refuse(true)
			tc.breakLink(t, admin, px)
			pollUntil(t, "bypassed after its link broke", func() bool { return !mpauthx.CacheHolds(b, tok) })
			// A killed connection fails the revoke that was on it.
			pollUntil(t, "revoked", func() bool { return e.c.RevokeToken(bg, tok) == nil })
			px.refuse(false)
			pollUntil(t, "linked again", func() bool { return mpauthx.CacheLinkUps(b) > ups })
			if mpauthx.CacheHolds(b, tok) || checkOf(t, b)(tok) {
				t.Fatal("the cache answers for a token revoked while its link was down")
			}
			revokeSeen(t, e, b, u)
		})
	}
	t.Run("Redis restarted empty", func(t *testing.T) {
		p, e, b, _ := cacheProcEnv(t)
		u := e.user("gus")
		tok := e.login(t, u)
		holdOn(t, b, tok)
		ups := mpauthx.CacheLinkUps(b)
		p.Kill()
		p.Start() // without its data: --save "" and no append-only file
		// Once the link is back, the cache must not answer for the token
		// Redis lost.
		pollUntil(t, "linked again", func() bool { return mpauthx.CacheLinkUps(b) > ups })
		if mpauthx.CacheHolds(b, tok) || checkOf(t, b)(tok) {
			t.Error("the cache answers for a token that Redis lost")
		}
		var err error
		pollUntil(t, "logged in again", func() bool { tok, err = e.tryLogin(bg, u); return err == nil })
		holdOn(t, b, tok)
	})
	t.Run("FLUSHALL", func(t *testing.T) {
		// Redis announces a flush as one invalidation of everything.
		_, e, b, admin := cacheProcEnv(t)
		u := e.user("jon")
		tok := e.login(t, u)
		holdOn(t, b, tok)
		if err := admin.FlushAll(bg).Err(); err != nil {
			t.Fatal(err)
		}
		refusedOn(t, b, tok)
		revokeSeen(t, e, b, u)
	})
	t.Run("SWAPDB", func(t *testing.T) {
		// Redis announces no invalidation when SWAPDB swaps the Client's
		// database for another: the cache must empty itself, and answer
		// again for what the swapped-in database holds, each time.
		_, e, b, admin := cacheProcEnv(t)
		u := e.user("kay")
		old := e.login(t, u)
		holdOn(t, b, old)
		swapped := func(gone string) {
			t.Helper()
			if err := admin.Do(bg, "swapdb", 0, 1).Err(); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, "emptied", func() bool { return mpauthx.CacheLen(b) == 0 })
			tok := e.login(t, e.user("lee")) // the cache answers again
			holdOn(t, b, tok)
			if mpauthx.CacheHolds(b, gone) || checkOf(t, b)(gone) {
				t.Error("the cache answers for a token of the database swapped out")
			}
		}
		swapped(old)
		cur := e.login(t, u)
		holdOn(t, b, cur)
		swapped(cur) // back: the first database, with its old canary
		holdOn(t, b, old)
	})
	t.Run("Redis paused", func(t *testing.T) {
		// A link that goes silent (here: the server stopped with SIGSTOP)
		// stops the cache answering once its lease runs out, and a PONG
		// on the same connection afterwards makes it answer again.
		p, e, b, _ := cacheProcEnv(t)
		tok := e.login(t, e.user("hal"))
		holdOn(t, b, tok)
		p.Pause()
		pollUntil(t, "bypassed while Redis does not answer", func() bool { return !mpauthx.CacheHolds(b, tok) })
		p.Resume()
		holdOn(t, b, tok)
	})
}

// TestLocalCacheRefusedByACL checks that a Redis user that may not track
// keys or subscribe to the invalidations (as on providers without CLIENT
// TRACKING) gets a Client that works as without the cache, and one log
// line saying why.
func TestLocalCacheRefusedByACL(t *testing.T) {
	for _, tc := range []struct{ name, rules string }{
		{"no CLIENT TRACKING", "allchannels +@all -client|tracking"},
		{"no invalidation channel", "resetchannels +@all"},
		{"no canary key", "resetkeys ~mpauthx:{* allchannels +@all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startRedis(t)
			admin := redis.NewClient(&redis.Options{Addr: p.Addr()})
			t.Cleanup(func() { admin.Close() })
			args := []any{"acl", "setuser", "app", "on", ">app-password", "~*"}
			for _, r := range strings.Fields(tc.rules) {
				args = append(args, r)
			}
			if err := admin.Do(bg, args...).Err(); err != nil {
				t.Fatal(err)
			}
			e := newProcWorld(t, p.Addr())
			var logs *logBuffer
			e.cfg.LocalCache = cacheSize
			e.cfg.Logger, logs = captureLogs(false)
			openKind(t, e, redisKind{name: "app user", client: func(addr string) *redis.Client {
				return redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "app-password"})
			}})
			pollUntil(t, "logged", func() bool { return cacheOffLines(logs) > 0 })
			tok := e.login(t, e.user("ivy"))
			for range 2 { // the second check would be a hit
				if !e.valid(t, tok) || mpauthx.CacheHolds(e.c, tok) {
					t.Error("the token is not valid, or held by a cache that is off")
				}
			}
			if err := e.c.RevokeToken(bg, tok); err != nil || e.valid(t, tok) {
				t.Errorf("revoke: %v; still valid: %v", err, e.valid(t, tok))
			}
			if n := cacheOffLines(logs); n != 1 {
				t.Errorf("%d log lines say the cache is off, want 1:\n%s", n, logs)
			}
		})
	}
}

// cacheProxy forwards loopback connections to a Redis server, so that a
// test can freeze an instance's connections (every byte held, both ways,
// as on a network that stops delivering without closing anything), cut
// them, and refuse new ones, without touching the server or the other
// instances' connections.
type cacheProxy struct {
	lb     *loopback
	target string

	mu       sync.Mutex
	thawed   *sync.Cond // broadcast when frozen turns false
	frozen   bool
	refusing bool
	conns    []net.Conn // both ends of every forwarded connection
}

// newCacheProxy starts a proxy to target; it stops when the test ends.
func newCacheProxy(t *testing.T, target string) *cacheProxy {
	t.Helper()
	p := &cacheProxy{lb: newLoopback(t), target: target}
	p.thawed = sync.NewCond(&p.mu)
	t.Cleanup(p.thaw) // no forwarder stays blocked
	p.lb.serve(func(client net.Conn) {
		p.mu.Lock()
		refusing := p.refusing
		p.mu.Unlock()
		if refusing {
			client.Close()
			return
		}
		server, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			return
		}
		p.lb.keep(server)
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.lb.wg.Go(func() { p.forward(server, client) })
		p.forward(client, server)
	})
	return p
}

// addr is where clients connect.
func (p *cacheProxy) addr() string { return p.lb.addr() }

// forward copies from src to dst, holding what it read while frozen, and
// closes both when either side ends.
func (p *cacheProxy) forward(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.thawed.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freeze holds every byte of every connection from now on.
func (p *cacheProxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// thaw delivers what was held, and forwards again.
func (p *cacheProxy) thaw() {
	p.mu.Lock()
	p.frozen = false
	p.thawed.Broadcast()
	p.mu.Unlock()
}

// refuse makes the proxy close new connections at once (on) or forward
// them again (off).
func (p *cacheProxy) refuse(on bool) {
	p.mu.Lock()
	p.refusing = on
	p.mu.Unlock()
}

// cut closes every connection forwarded so far.
func (p *cacheProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// proxiedCacheEnv starts a redis-server and returns its env with a Client
// A (e.c, with a local cache, reaching Redis directly), a second instance
// B with a local cache whose every connection goes through a cacheProxy,
// and the proxy.
func proxiedCacheEnv(t *testing.T) (e *env, b *mpauthx.Client, px *cacheProxy) {
	t.Helper()
	p := startRedis(t)
	e = newProcWorld(t, p.Addr())
	e.cfg.LocalCache = cacheSize
	openKind(t, e, redisKinds()[1])
	px = newCacheProxy(t, p.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: px.addr(), ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	b = e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = rdb })
	return e, b, px
}

// staleBound is the staleness that Config.LocalCache promises never to
// exceed (SPEC section 10): no instance answers true for a token later
// than this after the write that ended it returned.
const staleBound = 100 * time.Millisecond

// staleWindow is how long the bound tests keep checking after a write.
const staleWindow = 1500 * time.Millisecond

// neverStale checks token on c for staleWindow from ended, the moment the
// write that ended it returned, and fails the test if a check that
// started more than staleBound after ended says true. A check that fails
// (Redis out of reach through a frozen link) is no answer; each waits for
// Redis at most checkWait.
func neverStale(t *testing.T, c *mpauthx.Client, token string, ended time.Time) {
	t.Helper()
	const checkWait = 100 * time.Millisecond
	for time.Since(ended) < staleWindow {
		start := time.Now()
		ctx, cancel := context.WithTimeout(bg, checkWait)
		ok, err := c.IsTokenValid(ctx, token)
		cancel()
		if late := start.Sub(ended); err == nil && ok && late > staleBound {
			t.Fatalf("a check started %v after the token ended says true: stale beyond the promised %v", late.Round(time.Millisecond), staleBound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLocalCacheStaleBound checks the promise itself: while B's
// connections are frozen (its cache hears nothing, neither the revoke's
// invalidation nor anything else), a token revoked elsewhere stops
// validating on B within staleBound, and B answers from its cache again
// once they thaw.
func TestLocalCacheStaleBound(t *testing.T) {
	e, b, px := proxiedCacheEnv(t)
	tok := e.login(t, e.user("fay"))
	holdOn(t, b, tok)
	px.freeze()
	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatal(err)
	}
	neverStale(t, b, tok, time.Now())
	px.thaw()
	refusedOn(t, b, tok)
	holdOn(t, b, e.login(t, e.user("gil")))
}

// TestLocalCacheRefreshDuringCheck checks the ordering of a check and an
// invalidation: a check reads the old session live, then, before it is
// cached, another instance refreshes the token and B hears of it. The
// check may answer true (it read before the refresh), but the old session
// must not enter B's cache, where nothing would ever remove it.
func TestLocalCacheRefreshDuringCheck(t *testing.T) {
	_, e, b, _ := cacheProcEnv(t)
	u := e.user("ida")
	old := e.login(t, u)
	holdOn(t, b, e.login(t, e.user("jay"))) // B's cache answers
	heard := mpauthx.CacheInvalidated(b)
	var once sync.Once
	mpauthx.SetCacheAfterRead(b, func() {
		once.Do(func() {
			if _, err := e.c.RefreshToken(bg, u.OpenID); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, "heard of the refresh", func() bool { return mpauthx.CacheInvalidated(b) > heard })
		})
	})
	filled := mpauthx.CacheFilled(b)
	if !checkOf(t, b)(old) {
		t.Fatal("the check that read Redis before the refresh says false")
	}
	mpauthx.SetCacheAfterRead(b, nil)
	pollUntil(t, "taken by the filler", func() bool { return mpauthx.CacheFilled(b) > filled })
	if mpauthx.CacheHolds(b, old) || checkOf(t, b)(old) {
		t.Fatal("the cache holds the session that a refresh replaced during the check")
	}
}
