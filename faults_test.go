//go:build unix

package mpauthx_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// redisKind is how a fault test's Client reaches its redis-server: through
// the client New dials (Config.RedisAddr) or through the caller's own.
type redisKind struct {
	name string
	// client returns the caller's client for addr, or nil to let New dial
	// addr itself.
	client func(addr string) *redis.Client
}

// redisKinds lists both ways. The caller's client has the options the
// docs/operations.md recommends: ContextTimeoutEnabled, without which go-redis does not
// let a ctx deadline interrupt a blocked read, and New's fail-fast retries
// (with go-redis's defaults an IsTokenValid during an outage took up to
// 4.3 s under -race, too close to the tests' 5 s ctx).
func redisKinds() []redisKind {
	return []redisKind{
		{name: "dialled by New"},
		{name: "caller's client", client: func(addr string) *redis.Client {
			return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1})
		}},
	}
}

// newProcEnv builds an env on the redis-server at addr, reached as kind
// says. Everything is closed when t ends (closing the Client again is
// harmless).
func newProcEnv(t *testing.T, kind redisKind, addr string) *env {
	t.Helper()
	e := newProcWorld(t, addr)
	openKind(t, e, kind)
	return e
}

// newProcWorld builds the parts of an env on the redis-server at addr that
// are not the Client's: the fake WeChat, the SQLite file and the Config.
func newProcWorld(t *testing.T, addr string) *env {
	t.Helper()
	e := newWorld(t)
	e.cfg.RedisAddr = addr
	return e
}

// openKind creates e's Client, and the caller's Redis client first if
// kind has one; without, New dials e.cfg.RedisAddr itself and e.rdb stays
// nil.
func openKind(t *testing.T, e *env, kind redisKind) {
	t.Helper()
	if kind.client != nil {
		rdb := kind.client(e.cfg.RedisAddr)
		t.Cleanup(func() { rdb.Close() })
		e.rdb, e.cfg.Redis = rdb, rdb
	}
	e.open(t)
}

// TestRedisSlow checks that every call that needs Redis honours its ctx
// while Redis is alive but does not answer (a long DEBUG SLEEP, or the
// process paused with SIGSTOP): it returns a 6000 wrapping
// context.DeadlineExceeded before Redis answers again, and every call works
// once Redis does.
func TestRedisSlow(t *testing.T) {
	const (
		callTimeout = 200 * time.Millisecond
		pauseFor    = 2 * time.Second  // DEBUG SLEEP 2
		stopGuard   = 60 * time.Second // SIGCONT if the calls hang on a stopped Redis
		each        = 4                // concurrent calls of each kind
	)
	pauses := []struct {
		name string
		// pause makes p unresponsive and returns a function that reports
		// whether p is still unresponsive and one that ends the pause.
		pause func(t *testing.T, p *redisProc) (stillPaused func() bool, resume func())
	}{
		{"DEBUG SLEEP", func(t *testing.T, p *redisProc) (func() bool, func()) {
			conn, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			if _, err := conn.Write([]byte("DEBUG SLEEP 2\r\n")); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); !unresponsive(p); { // until the server has read the command
				if time.Now().After(deadline) {
					t.Fatal("DEBUG SLEEP did not make Redis unresponsive")
				}
			}
			return func() bool { return unresponsive(p) }, func() {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || strings.TrimSpace(line) != "+OK" {
					t.Fatalf("DEBUG SLEEP answered %q, %v", line, err)
				}
			}
		}},
		{"SIGSTOP", func(t *testing.T, p *redisProc) (func() bool, func()) {
			p.Pause()
			// The pause lasts until the calls have returned: a call that
			// waits for Redis instead of its ctx sees it answer again
			// only after stopGuard, a hang guard, and fails the test.
			cont := time.AfterFunc(stopGuard, p.Resume)
			return func() bool { return unresponsive(p) }, func() {
				cont.Stop()
				p.Resume()
			}
		}},
	}
	// A caller's client with go-redis's defaults too: without
	// ContextTimeoutEnabled go-redis waits out a stalled Redis, and the
	// Client must still return when ctx ends.
	kinds := append(redisKinds(), redisKind{name: "caller's client with go-redis defaults", client: func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr})
	}})
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			p := startRedis(t)
			e := newProcEnv(t, kind, p.Addr())
			for _, pz := range pauses {
				t.Run(pz.name, func(t *testing.T) {
					checked := e.login(t, e.user("check"))
					refreshed := e.user("refresh")
					e.login(t, refreshed)
					revoked := e.login(t, e.user("revoke"))
					type call struct {
						name string
						call func(ctx context.Context) error
					}
					// Each kind of call several times at once: whether the
					// error wraps the ctx's depends on which of ctx's timer
					// and the socket's deadline fires first.
					var calls []call
					for range each {
						newcomer := e.user("new")
						data, iv := e.wx.UserInfo(newcomer.OpenID)
						code := e.wx.Code(newcomer.OpenID)
						calls = append(calls,
							call{"IsTokenValid", func(ctx context.Context) error {
								ok, err := e.c.IsTokenValid(ctx, checked)
								if ok {
									t.Errorf("IsTokenValid = true while Redis does not answer")
								}
								return err
							}},
							call{"Authorize", func(ctx context.Context) error { return second(e.c.Authorize(ctx, code, data, iv)) }},
							call{"RefreshToken", func(ctx context.Context) error { return second(e.c.RefreshToken(ctx, refreshed.OpenID)) }},
							call{"RevokeToken", func(ctx context.Context) error { return e.c.RevokeToken(ctx, revoked) }},
						)
					}
					stillPaused, resume := pz.pause(t, p)
					errs := make([]error, len(calls))
					took := make([]time.Duration, len(calls))
					var wg sync.WaitGroup
					for i, c := range calls {
						wg.Go(func() {
							ctx, cancel := context.WithTimeout(bg, callTimeout)
							defer cancel()
							start := time.Now()
							errs[i] = c.call(ctx)
							took[i] = time.Since(start)
						})
					}
					wg.Wait()
					paused := stillPaused()
					resume()
					if !paused {
						t.Fatalf("the calls took %v and returned %v: Redis answered again before they returned, so they waited for Redis, not for their %v ctx", took, errs, callTimeout)
					}
					for i, c := range calls {
						if mpauthx.Code(errs[i]) != mpauthx.StatusDatabaseError || !errors.Is(errs[i], context.DeadlineExceeded) {
							t.Errorf("%s with a %v ctx while Redis sleeps: %v; want a 6000 wrapping context.DeadlineExceeded", c.name, callTimeout, errs[i])
						}
					}
					t.Logf("%d calls with a %v ctx returned after %v .. %v", len(calls), callTimeout, slices.Min(took), slices.Max(took))

					// Redis answers again: every call works. A call that gave
					// up at its ctx may still take effect once Redis wakes
					// (its command had been sent): a late RefreshToken of
					// refreshed could replace any token issued for it now.
					// So these calls are made for users the calls above never
					// touched.
					tok := e.login(t, e.user("after"))
					if !e.valid(t, tok) {
						t.Fatal("a token issued after the pause is not valid")
					}
					again := e.user("refresh-after")
					e.login(t, again)
					res, err := e.c.RefreshToken(bg, again.OpenID)
					if err != nil {
						t.Fatalf("RefreshToken after the pause: %v", err)
					}
					if !e.valid(t, res.Response) {
						t.Fatal("the refreshed token is not valid")
					}
					if err := e.c.RevokeToken(bg, res.Response); err != nil {
						t.Fatalf("RevokeToken after the pause: %v", err)
					}
					if e.valid(t, res.Response) {
						t.Fatal("the revoked token is still valid")
					}
				})
			}
		})
	}
}

// unresponsive reports whether the server at p accepts a connection but
// does not answer PING within 50 ms.
func unresponsive(p *redisProc) bool {
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	_, err = bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Phases of TestRedisKilledUnderLoad, as the load's calls see them.
const (
	phaseUp        int32 = iota // Redis runs
	phaseKilling                // Redis is being killed
	phaseDown                   // Redis is dead
	phaseRestarted              // Redis is being restarted, or was; the Client may still be recovering
	phaseRecovered              // every kind of call has worked again
)

// loadCall is one call of the load: when it started and ended, and how it
// went.
type loadCall struct {
	name       string
	start, end int32 // phases
	took       time.Duration
	err        error
	token      string // a login's token
	valid      bool   // IsTokenValid's answer
}

// TestRedisKilledUnderLoad kills a persistent Redis (appendfsync always)
// with SIGKILL while goroutines log users in and check tokens, keeps it
// down for a while and restarts it on the same port and directory. During
// the outage every call fails with 6000, not by running into its ctx (a
// hang guard); after the restart every kind of call works again,
// every token issued before the kill is still valid, every key has a TTL,
// and closing the Client leaves no goroutine behind.
func TestRedisKilledUnderLoad(t *testing.T) {
	const (
		workers      = 4
		callTimeout  = 30 * time.Second // a hang guard: a failing call must not need it
		recoverBound = 2 * time.Minute  // a hang guard: the restart must heal eventually
		wantUp       = 40               // logins before the kill
		wantDown     = 3 * workers      // calls wholly inside the outage
		wantAfter    = 3 * workers      // calls after recovery
	)
	for _, kind := range redisKinds() {
		t.Run(kind.name, func(t *testing.T) {
			p := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
			e := newProcWorld(t, p.Addr())
			leaks := goleak.IgnoreCurrent()
			openKind(t, e, kind)

			var (
				phase  atomic.Int32
				stop   = make(chan struct{})
				mu     sync.Mutex
				calls  []loadCall
				count  [phaseRecovered + 1]int // calls wholly inside each phase
				logins int
			)
			record := func(c loadCall) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, c)
				if c.start == c.end {
					count[c.start]++
				}
				if c.token != "" {
					logins++
				}
			}
			// counts returns count and logins.
			counts := func() ([phaseRecovered + 1]int, int) {
				mu.Lock()
				defer mu.Unlock()
				return count, logins
			}
			// do runs one call of the load with a callTimeout ctx.
			do := func(name string, f func(ctx context.Context) (loadCall, error)) loadCall {
				ctx, cancel := context.WithTimeout(bg, callTimeout)
				defer cancel()
				start := phase.Load()
				begin := time.Now()
				c, err := f(ctx)
				c.name, c.start, c.end, c.took, c.err = name, start, phase.Load(), time.Since(begin), err
				record(c)
				return c
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					var last string // this worker's latest token
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						u := e.user("load")
						var login loadCall
						if (w+i)%2 == 0 {
							login = do("Authorize", func(ctx context.Context) (loadCall, error) {
								tok, err := e.tryLogin(ctx, u)
								return loadCall{token: tok}, err
							})
						} else {
							login = do("AuthorizeCode", func(ctx context.Context) (loadCall, error) {
								res, err := e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
								return loadCall{token: res.Response}, err
							})
						}
						if login.err == nil {
							last = login.token
						}
						if last != "" {
							do("IsTokenValid", func(ctx context.Context) (loadCall, error) {
								ok, err := e.c.IsTokenValid(ctx, last)
								return loadCall{valid: ok}, err
							})
						}
						time.Sleep(2 * time.Millisecond) // a steady load, not a spin
					}
				})
			}
			stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
			t.Cleanup(stopLoad)

			// waitFor polls until cond holds, failing the test after bound.
			waitFor := func(what string, bound time.Duration, cond func() bool) {
				t.Helper()
				for deadline := time.Now().Add(bound); !cond(); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						n, l := counts()
						t.Fatalf("after %v: not %s (calls per phase %v, logins %d)", bound, what, n, l)
					}
				}
			}
			waitFor("enough logins before the kill", 30*time.Second, func() bool { _, l := counts(); return l >= wantUp })

			phase.Store(phaseKilling)
			p.Kill()
			phase.Store(phaseDown)
			waitFor("enough calls during the outage", 30*time.Second, func() bool { n, _ := counts(); return n[phaseDown] >= wantDown })

			phase.Store(phaseRestarted)
			ready := p.Start()
			restarted := time.Now()
			probe := e.user("probe")
			var probeTok string
			var lastErr error
			healed := func() bool {
				ctx, cancel := context.WithTimeout(bg, callTimeout)
				defer cancel()
				probeTok, lastErr = e.tryLogin(ctx, probe)
				if lastErr != nil {
					return false
				}
				var ok bool
				if ok, lastErr = e.c.IsTokenValid(ctx, probeTok); !ok || lastErr != nil {
					return false
				}
				res, err := e.c.RefreshToken(ctx, probe.OpenID)
				if lastErr = err; err != nil {
					return false
				}
				lastErr = e.c.RevokeToken(ctx, res.Response)
				return lastErr == nil
			}
			for !healed() {
				if time.Since(restarted) > recoverBound {
					t.Fatalf("calls still fail %v after Redis answered PING again: %v", recoverBound, lastErr)
				}
				time.Sleep(10 * time.Millisecond)
			}
			healTime := time.Since(restarted)
			phase.Store(phaseRecovered)
			waitFor("enough calls after recovery", 30*time.Second, func() bool { n, _ := counts(); return n[phaseRecovered] >= wantAfter })
			stopLoad()

			// Every call: up, it worked; down, it failed fast with 6000;
			// recovered, it worked; in between, it may have done either.
			// No failure ran into its ctx.
			var issued []string
			down := map[string][]time.Duration{}
			for _, c := range calls {
				switch {
				case c.err != nil && (mpauthx.Code(c.err) != mpauthx.StatusDatabaseError || errors.Is(c.err, context.DeadlineExceeded)):
					t.Errorf("%s (phases %d..%d, %v): %v; want a 6000 without a deadline", c.name, c.start, c.end, c.took, c.err)
				case c.err != nil && c.start == c.end && (c.start == phaseUp || c.start == phaseRecovered):
					t.Errorf("%s failed while Redis was up (phase %d): %v", c.name, c.start, c.err)
				case c.err == nil && c.start == phaseDown && c.end == phaseDown:
					t.Errorf("%s succeeded while Redis was down", c.name)
				case c.err == nil && c.name == "IsTokenValid" && !c.valid && c.start != phaseDown:
					t.Errorf("IsTokenValid of the worker's latest token = false (phases %d..%d)", c.start, c.end)
				}
				if c.err != nil && c.start == phaseDown && c.end == phaseDown {
					down[c.name] = append(down[c.name], c.took)
				}
				if c.err == nil && c.token != "" {
					issued = append(issued, c.token)
				}
			}
			for name, d := range down {
				slices.Sort(d)
				t.Logf("outage: %d %s calls failed with 6000 in %v (median) .. %v (max)", len(d), name, d[len(d)/2], d[len(d)-1])
			}
			t.Logf("restart: PING answered %v after the restart began; every call worked again %v after that", ready, healTime)

			// No token lost, every key has a TTL.
			for _, tok := range issued {
				if !e.valid(t, tok) {
					t.Errorf("token %s… issued before the kill is lost", tok[:8])
				}
			}
			checkTTLs(t, p.Addr(), len(issued))

			if err := e.c.Close(); err != nil {
				t.Fatal(err)
			}
			if e.rdb != nil {
				e.rdb.Close() // the caller closes its own client
			}
			// go-redis probes a pool whose dials failed PoolSize times in a
			// goroutine that sleeps a second between probes and sees Close
			// at its next wake-up: give it that second, and a margin.
			for end := time.Now().Add(3 * time.Second); goleak.Find(leaks) != nil && time.Now().Before(end); {
				time.Sleep(50 * time.Millisecond)
			}
			goleak.VerifyNone(t, leaks)
		})
	}
}

// checkTTLs fails the test unless every key of the server at addr has a
// TTL, and there are at least min of them.
func checkTTLs(t *testing.T, addr string, min int) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	keys := scanKeys(t, rdb, "*")
	for _, k := range keys {
		if k == skuRegistryKey { // the one key without a TTL: a few Sku names (deleteuser.go)
			continue
		}
		if ttl, err := rdb.PTTL(bg, k).Result(); err != nil || ttl <= 0 {
			t.Errorf("key %q: PTTL %v, %v; want a TTL", k, ttl, err)
		}
	}
	if len(keys) < min {
		t.Fatalf("%d keys for %d live tokens", len(keys), min)
	}
}

// TestWeChatFaultsWriteNothing checks each WeChat fault from the user's
// side: Authorize and AuthorizeCode give 6008 with the right cause after
// a bounded number of requests, write no user row and no Redis key for a
// user who never logged in before, and work again once WeChat does. The
// codes of single faults are TestWeChatFailures's; this test adds the
// storm, the request counts and what is (not) written.
func TestWeChatFaultsWriteNothing(t *testing.T) {
	huge := append([]byte(`{"openid":"x","session_key":"`), make([]byte, 2<<20)...)
	faults := []struct {
		name     string
		fault    mpauthxtest.Fault
		n        int           // how many requests in a row get the fault
		timeout  time.Duration // the call's ctx; 0: none
		requests int           // code2session requests the failing call makes
		errcode  int           // the *WeChatError's errcode; 0: none
		inner    mpauthx.StatusCode
		deadline bool // the error wraps context.DeadlineExceeded
	}{
		// 1 request + 3 retries: the storm outlasts them (6 > 4); the 2
		// busy answers left are ridden out by the next login's retries.
		{name: "errcode -1 storm", fault: mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeBusy}, n: 6, requests: 4, errcode: mpauthx.ErrCodeBusy},
		{name: "rate limited", fault: mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeRateLimited}, n: 1, requests: 1, errcode: mpauthx.ErrCodeRateLimited},
		{name: "http 500", fault: mpauthxtest.Fault{Status: 500}, n: 1, requests: 1, inner: mpauthx.StatusHTTPError},
		{name: "empty body", fault: mpauthxtest.Fault{Body: []byte{}}, n: 1, requests: 1, inner: mpauthx.StatusResponseIsNull},
		{name: "not JSON", fault: mpauthxtest.Fault{Body: []byte("<html>502 Bad Gateway</html>")}, n: 1, requests: 1, inner: mpauthx.StatusJSONParseError},
		{name: "truncated JSON", fault: mpauthxtest.Fault{Body: []byte(`{"openid":"o1","session_ke`)}, n: 1, requests: 1, inner: mpauthx.StatusJSONParseError},
		{name: "over 1 MiB", fault: mpauthxtest.Fault{Body: huge}, n: 1, requests: 1, inner: mpauthx.StatusHTTPResponseError},
		{name: "slow", fault: mpauthxtest.Fault{Delay: time.Minute}, n: 1, timeout: 100 * time.Millisecond, requests: 1, deadline: true},
	}
	calls := []struct {
		name string
		call func(ctx context.Context, c *mpauthx.Client, wx *mpauthxtest.Server, openID string) (mpauthx.Result, error)
	}{
		{"Authorize", func(ctx context.Context, c *mpauthx.Client, wx *mpauthxtest.Server, openID string) (mpauthx.Result, error) {
			data, iv := wx.UserInfo(openID)
			return c.Authorize(ctx, wx.Code(openID), data, iv)
		}},
		{"AuthorizeCode", func(ctx context.Context, c *mpauthx.Client, wx *mpauthxtest.Server, openID string) (mpauthx.Result, error) {
			return c.AuthorizeCode(ctx, wx.Code(openID))
		}},
	}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		healed := 0
		for _, f := range faults {
			for _, call := range calls {
				t.Run(f.name+"/"+call.name, func(t *testing.T) {
					// A WeChat of its own, so that faults left queued
					// reach only this subtest.
					wx := mpauthxtest.NewServer(e.wx.AppID, e.wx.AppSecret)
					defer wx.Close()
					c := e.client(t, func(cfg *mpauthx.Config) { cfg.APIBase = wx.URL })
					u := wx.AddUser(mpauthxtest.User{OpenID: "ofault-" + rand.Text()[:10], NickName: "f"})

					ctx := bg
					if f.timeout > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(bg, f.timeout)
						defer cancel()
					}
					wx.FailNext(f.n, f.fault)
					before := wx.Requests()
					res, err := call.call(ctx, c, wx, u.OpenID)
					wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
					if res.Response != "" || res.StatusCode != mpauthx.StatusSessionKeyRequestError {
						t.Errorf("Result = %+v", res)
					}
					if n := wx.Requests() - before; n != f.requests {
						t.Errorf("%d code2session requests, want %d", n, f.requests)
					}
					var we *mpauthx.WeChatError
					if got := errors.As(err, &we); got != (f.errcode != 0) || (got && we.ErrCode != f.errcode) {
						t.Errorf("WeChatError = %v, want errcode %d (err %v)", we, f.errcode, err)
					}
					var inner *mpauthx.Error
					if f.inner != 0 && (!errors.As(errors.Unwrap(err), &inner) || inner.Code != f.inner) {
						t.Errorf("the cause of %v is not a %d", err, f.inner)
					}
					if got := errors.Is(err, context.DeadlineExceeded); got != f.deadline {
						t.Errorf("errors.Is(%v, context.DeadlineExceeded) = %v", err, got)
					}
					if e.rowExists(t, u.OpenID) {
						t.Error("a user row was written for a failed login")
					}
					if n, err := e.rdb.Exists(bg, e.key(u.OpenID)).Result(); err != nil || n != 0 {
						t.Errorf("a Redis key was written for a failed login: EXISTS = %d, %v", n, err)
					}

					// WeChat answers again: the login works.
					res, err = call.call(bg, c, wx, u.OpenID)
					if err != nil {
						t.Fatalf("login after the fault: %v", err)
					}
					healed++
					if !e.valid(t, res.Response) || !e.rowExists(t, u.OpenID) {
						t.Fatal("the login after the fault left no valid token or no user row")
					}
				})
			}
		}
		// Every key of this Sku is a healed login's, with a TTL.
		keys := e.skuKeys(t)
		for _, k := range keys {
			if ttl, err := e.rdb.PTTL(bg, k).Result(); err != nil || ttl <= 0 {
				t.Errorf("key %q: PTTL %v, %v; want a TTL", k, ttl, err)
			}
		}
		if len(keys) != healed {
			t.Errorf("%d keys for %d logins: %q", len(keys), healed, keys)
		}
	})
}

// TestSQLiteBusy holds SQLite's write lock from another connection (BEGIN
// IMMEDIATE on the same file) while users log in. A login that must write
// the user table waits for the busy timeout of OpenSQLite, then fails with
// 6000 before its ctx ends and leaves no token; logins and refreshes that
// only read go on (WAL). Once the lock is released logins work again and
// the database is intact.
func TestSQLiteBusy(t *testing.T) {
	e := newEnv(t, backends()[0], nil) // the fault is SQLite's: miniredis is enough
	var (
		seq        int
		name, path string
	)
	if err := e.db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &path); err != nil {
		t.Fatal(err)
	}
	returning := e.user("returning")
	oldTok := e.login(t, returning)

	locker, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	lock, err := locker.Conn(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(bg, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(bg, `INSERT INTO user(openId, nickName) VALUES('olocker', 'locker')`); err != nil {
		t.Fatal(err)
	}

	t.Run("reads go on", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		res, err := e.c.AuthorizeCode(ctx, e.wx.Code(returning.OpenID))
		if err != nil || res.Response != oldTok {
			t.Fatalf("AuthorizeCode of a registered user = %q, %v; want its token", res.Response, err)
		}
		if _, err := e.c.RefreshToken(ctx, returning.OpenID); err != nil {
			t.Fatalf("RefreshToken: %v", err)
		}
	})
	newcomer := e.user("newcomer")
	t.Run("writes fail after the busy timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		data, iv := e.wx.UserInfo(newcomer.OpenID)
		start := time.Now()
		res, err := e.c.Authorize(ctx, e.wx.Code(newcomer.OpenID), data, iv)
		took := time.Since(start)
		wantCode(t, err, mpauthx.StatusDatabaseError)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			t.Fatalf("Authorize returned after its 30 s ctx ended: %v", err)
		}
		if res.Response != "" {
			t.Fatalf("Result = %+v", res)
		}
		t.Logf("Authorize on a write-locked table: %v after %v", err, took)
		if e.rowExists(t, newcomer.OpenID) {
			t.Fatal("a user row was written")
		}
		if e.mr.Exists(e.key(newcomer.OpenID)) {
			t.Fatal("a token was stored for a login that failed")
		}
	})

	if _, err := lock.ExecContext(bg, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	t.Run("lock released", func(t *testing.T) {
		tok := e.login(t, newcomer)
		if !e.valid(t, tok) || !e.rowExists(t, newcomer.OpenID) || !e.rowExists(t, "olocker") {
			t.Fatal("after the lock: no valid token, or a row is missing")
		}
		if ttl := e.mr.TTL(e.key(newcomer.OpenID)); ttl <= 0 {
			t.Fatalf("TTL %v", ttl)
		}
		var ok string
		if err := e.db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("PRAGMA integrity_check = %q, %v", ok, err)
		}
	})
}
