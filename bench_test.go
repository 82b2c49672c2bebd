package mpauthx_test

// Benchmarks of the Client's calls, with 64 calls in flight like the Node
// original's benchmark, plus the go-redis baselines they are compared with
// (docs/performance.md). They run on an in-process miniredis, and also on
// the real Redis at $MPAUTHX_REDIS_ADDR when it is set:
//
//	MPAUTHX_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench . -benchmem
//
// Allocations include everything in the process: go-redis's background
// goroutines and, for the logins, the fake WeChat server answering
// code2session.
//
// This file also holds the tests of the Client's batched commands: that
// every caller gets its own answer, error and cancellation, and that the
// Client keeps its autopipeliner to itself.

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// benchInFlight is the number of calls in flight in the parallel
// benchmarks, as in the Node original's benchmark.
const benchInFlight = 64

// benchUsers is the number of users a benchmark's calls cycle through.
const benchUsers = 2000

// inFlight64 makes b.RunParallel run benchInFlight goroutines (rounded up
// to a multiple of GOMAXPROCS).
func inFlight64(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchInFlight + procs - 1) / procs)
}

// benchRedis is a Redis a benchmark runs against.
type benchRedis struct {
	name string
	rdb  *redis.Client
}

// benchRedises opens an in-process miniredis, and the real Redis at
// $MPAUTHX_REDIS_ADDR when it is set. They are closed when b ends.
func benchRedises(b *testing.B) []benchRedis {
	mr := miniredis.RunT(b)
	rs := []benchRedis{{name: "miniredis", rdb: redis.NewClient(&redis.Options{Addr: mr.Addr()})}}
	if addr := os.Getenv(envRedisAddr); addr != "" {
		rs = append(rs, benchRedis{name: "redis", rdb: redis.NewClient(&redis.Options{Addr: addr})})
	}
	for _, r := range rs {
		b.Cleanup(func() { r.rdb.Close() })
	}
	return rs
}

// benchUser is a registered fake WeChat user with the encryptedData and iv
// of one profile.
type benchUser struct {
	openID, sessionKey, data, iv string
}

// benchWorld is an env (see newWorld) with registered users. Its Sku is
// made up ("bench-..."), and every key it writes is deleted when b ends.
type benchWorld struct {
	*env
	users []benchUser
}

// newBenchWorld builds a world on rdb with n registered users.
func newBenchWorld(b *testing.B, rdb *redis.Client, n int) *benchWorld {
	b.Helper()
	return newCachedBenchWorld(b, rdb, n, 0)
}

// newCachedBenchWorld builds a world on rdb with n registered users whose
// Client has Config.LocalCache localCache.
func newCachedBenchWorld(b *testing.B, rdb *redis.Client, n, localCache int) *benchWorld {
	b.Helper()
	w := &benchWorld{env: newWorld(b)}
	w.rdb = rdb
	w.cfg.Redis, w.cfg.Sku, w.cfg.TokenTTL = rdb, "bench-"+rand.Text()[:10], 10*time.Minute
	w.cfg.LocalCache = localCache
	w.open(b)
	w.users = make([]benchUser, n)
	for i := range w.users {
		u := w.wx.AddUser(mpauthxtest.User{
			OpenID: "o" + rand.Text()[:20] + strconv.Itoa(i), NickName: "bench",
			City: "Guangzhou", Province: "Guangdong", Country: "CN", Language: "zh_CN", Gender: 1,
		})
		data, iv := w.wx.UserInfo(u.OpenID)
		w.users[i] = benchUser{openID: u.OpenID, sessionKey: u.SessionKey, data: data, iv: iv}
	}
	b.Cleanup(func() {
		ctx := context.Background()
		rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, u := range w.users {
				p.Unlink(ctx, w.key(u.openID), w.skKey(u.openID))
			}
			return nil
		})
	})
	return w
}

// loginAll logs every user in with AuthorizeCode and returns their tokens.
func (w *benchWorld) loginAll(b *testing.B) []string {
	b.Helper()
	tokens := make([]string, len(w.users))
	for i, u := range w.users {
		res, err := w.c.AuthorizeCode(context.Background(), w.wx.Code(u.openID))
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = res.Response
	}
	return tokens
}

// codes returns n fresh login codes, for users cycled in order.
func (w *benchWorld) codes(n int) []string {
	codes := make([]string, n)
	for i := range codes {
		codes[i] = w.wx.Code(w.users[i%len(w.users)].openID)
	}
	return codes
}

// reportRate adds the calls per second to b's results.
func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// parallelCalls runs call(i) for i in [0, b.N) on benchInFlight
// goroutines.
func parallelCalls(b *testing.B, call func(i int) error) {
	inFlight64(b)
	b.ReportAllocs()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(int(next.Add(1) - 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkIsTokenValid(b *testing.B) {
	for _, r := range benchRedises(b) {
		w := newBenchWorld(b, r.rdb, benchUsers)
		tokens := w.loginAll(b)
		check := func(i int) error {
			ok, err := w.c.IsTokenValid(context.Background(), tokens[i%len(tokens)])
			if err == nil && !ok {
				err = errors.New("a live token is not valid")
			}
			return err
		}
		b.Run(r.name+"/64-goroutines", func(b *testing.B) {
			parallelCalls(b, check)
			reportRate(b, "checks/s")
		})
		// A lone check, with a ctx that cannot end (sent on the caller's
		// goroutine) and with one that can, like a request's (sent
		// through the batcher, so that the wait can be abandoned).
		lone := func(ctx context.Context) func(b *testing.B) {
			return func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					ok, err := w.c.IsTokenValid(ctx, tokens[i%len(tokens)])
					if err != nil || !ok {
						b.Fatalf("IsTokenValid = %v, %v", ok, err)
					}
				}
			}
		}
		reqCtx, cancel := context.WithCancel(context.Background())
		b.Run(r.name+"/1-goroutine", lone(context.Background()))
		b.Run(r.name+"/1-goroutine-cancelable-ctx", lone(reqCtx))
		cancel()
		if r.name != "miniredis" { // miniredis cannot track: no cache
			benchLocalCache(b, r)
		}
		// What a lone check is compared with, in the same process and on
		// the same keys: a bare go-redis EXISTS of the token's key.
		b.Run(r.name+"/1-goroutine-bare-EXISTS", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				u := &w.users[i%len(w.users)]
				if n, err := r.rdb.Exists(context.Background(), w.key(u.openID)).Result(); err != nil || n != 1 {
					b.Fatalf("EXISTS = %v, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkBaseline measures what IsTokenValid is compared with: a plain
// go-redis GET per call with 64 goroutines (what a straightforward port
// does), and a lone go-redis EXISTS or GET round trip.
func BenchmarkBaseline(b *testing.B) {
	// The Go scheduler's share of a batched call, with no I/O at all: 64
	// goroutines each queue a wait and park; one goroutine wakes the
	// queued ones in turn, as a batcher's worker does when a batch comes
	// back. Its rate bounds any coalescer's on the same cores.
	b.Run("no-IO-park-and-wake-64-goroutines", func(b *testing.B) {
		var mu sync.Mutex
		var queue []chan struct{}
		wake, stop := make(chan struct{}, 1), make(chan struct{})
		defer close(stop)
		go func() {
			var batch []chan struct{}
			for {
				select {
				case <-wake:
				case <-stop:
					return
				}
				mu.Lock()
				batch, queue = queue, batch[:0]
				mu.Unlock()
				for _, c := range batch {
					c <- struct{}{}
				}
			}
		}()
		waits := sync.Pool{New: func() any { return make(chan struct{}, 1) }}
		parallelCalls(b, func(int) error {
			c := waits.Get().(chan struct{})
			mu.Lock()
			queue = append(queue, c)
			mu.Unlock()
			select {
			case wake <- struct{}{}:
			default:
			}
			<-c
			waits.Put(c)
			return nil
		})
		reportRate(b, "wakes/s")
	})
	for _, r := range benchRedises(b) {
		ctx := context.Background()
		keys := make([]string, benchUsers)
		for i := range keys {
			keys[i] = "mpauthx:{bench-baseline-" + strconv.Itoa(i) + "|" + rand.Text()[:10] + "}:session"
		}
		if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Set(ctx, k, rand.Text(), 10*time.Minute)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			})
		})
		b.Run(r.name+"/GET-64-goroutines", func(b *testing.B) {
			parallelCalls(b, func(i int) error { return r.rdb.Get(ctx, keys[i%len(keys)]).Err() })
			reportRate(b, "GETs/s")
		})
		// The same GETs through a go-redis autopipeliner: with the options
		// the logins' pipeline uses (32x2-unordered), and others. They are
		// what IsTokenValid's own batcher was measured against, and why
		// the logins use those options.
		for _, o := range []struct {
			name string
			opt  redis.AutoPipelineOptions
		}{
			{"32x2-unordered", redis.AutoPipelineOptions{MaxBatchSize: 32, MaxConcurrentBatches: 2, Unordered: true}},
			{"16x4-unordered", redis.AutoPipelineOptions{MaxBatchSize: 16, MaxConcurrentBatches: 4, Unordered: true}},
			{"64x1", redis.AutoPipelineOptions{MaxBatchSize: 64}},
			{"go-redis-default", redis.AutoPipelineOptions{}},
			{"full-duplex", redis.AutoPipelineOptions{FullDuplex: true}},
		} {
			b.Run(r.name+"/autopipelined-GET-64-goroutines/"+o.name, func(b *testing.B) {
				ap, err := r.rdb.WithTimeout(r.rdb.Options().ReadTimeout).AsyncAutoPipelineWithOptions(&o.opt)
				if err != nil {
					b.Fatal(err)
				}
				defer ap.Close()
				parallelCalls(b, func(i int) error {
					cmd := redis.NewStringCmd(ctx, "get", keys[i%len(keys)])
					return ap.Submit(ctx, cmd).WaitContext(ctx)
				})
				reportRate(b, "GETs/s")
			})
		}
		if r.name != "miniredis" { // miniredis cannot track
			benchGoRedisCSC(b, r, keys)
		}
		b.Run(r.name+"/EXISTS-1-goroutine", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := r.rdb.Exists(ctx, keys[i%len(keys)]).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(r.name+"/GET-1-goroutine", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := r.rdb.Get(ctx, keys[i%len(keys)]).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAuthorize(b *testing.B) {
	benchLogins(b, func(c *mpauthx.Client, code string, u *benchUser) (mpauthx.Result, error) {
		return c.Authorize(context.Background(), code, u.data, u.iv)
	})
}

func BenchmarkAuthorizeCode(b *testing.B) {
	benchLogins(b, func(c *mpauthx.Client, code string, _ *benchUser) (mpauthx.Result, error) {
		return c.AuthorizeCode(context.Background(), code)
	})
}

// benchLogins measures login on each Redis with 64 calls in flight, each
// with a code of its own, and checks that every token is its user's.
func benchLogins(b *testing.B, login func(c *mpauthx.Client, code string, u *benchUser) (mpauthx.Result, error)) {
	for _, r := range benchRedises(b) {
		w := newBenchWorld(b, r.rdb, benchUsers)
		b.Run(r.name+"/64-in-flight", func(b *testing.B) {
			codes := w.codes(b.N)
			parallelCalls(b, func(i int) error {
				u := &w.users[i%len(w.users)]
				res, err := login(w.c, codes[i], u)
				if err == nil && w.c.ExtractOpenID(res.Response) != u.openID {
					err = errors.New("a token of another user")
				}
				return err
			})
			reportRate(b, "logins/s")
		})
	}
}

// BenchmarkRefreshTokenRedis measures RefreshToken on each Redis, with
// SQLite. (postgres_test.go's BenchmarkRefreshToken compares the SQL
// databases.)
func BenchmarkRefreshTokenRedis(b *testing.B) {
	for _, r := range benchRedises(b) {
		w := newBenchWorld(b, r.rdb, benchUsers)
		w.loginAll(b)
		b.Run(r.name+"/64-in-flight", func(b *testing.B) {
			parallelCalls(b, func(i int) error {
				_, err := w.c.RefreshToken(context.Background(), w.users[i%len(w.users)].openID)
				return err
			})
			reportRate(b, "refreshes/s")
		})
	}
}

func BenchmarkDecryptUserInfo(b *testing.B) {
	wx := mpauthxtest.NewServer("wx-bench-app", "bench-secret-value")
	defer wx.Close()
	u := wx.AddUser(mpauthxtest.User{OpenID: "oBenchDecrypt", NickName: "bench", City: "Guangzhou", Country: "CN"})
	data, iv := wx.UserInfo(u.OpenID)
	parallelCalls(b, func(int) error {
		_, err := mpauthx.DecryptUserInfo(wx.AppID, u.SessionKey, data, iv)
		return err
	})
}

// Tests of the pipelined commands (IsTokenValid's GETs, the logins' script).

// TestIsTokenValidCoalescedAnswers checks that, with many concurrent
// checks sharing pipelines, each caller gets the answer for its own token,
// and a caller whose ctx is already cancelled gets its own error while the
// others carry on.
func TestIsTokenValidCoalescedAnswers(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		type probe struct {
			token string
			ctx   context.Context
			want  bool
			code  mpauthx.StatusCode
		}
		cancelled, cancel := context.WithCancel(bg)
		cancel()
		var probes []probe
		for i := range 12 {
			tok := e.login(t, e.user("coalesce"+strconv.Itoa(i)))
			sess := tok[len(tok)-26:]
			userID := e.c.ExtractOpenID(tok)
			t.Cleanup(func() { e.rdb.Del(bg, e.key(userID)) }) // a shared Redis keeps nothing
			switch i % 4 {
			case 0:
				probes = append(probes, probe{token: tok, ctx: bg, want: true, code: mpauthx.StatusSuccess})
			case 1: // revoked
				if err := e.c.RevokeToken(bg, tok); err != nil {
					t.Fatal(err)
				}
				probes = append(probes, probe{token: tok, ctx: bg, code: mpauthx.StatusSuccess})
			case 2: // forged: the user is live, the session is not theirs
				forged := userID + "|" + e.cfg.Sku + "|" + rand.Text()
				probes = append(probes, probe{token: tok, ctx: bg, want: true, code: mpauthx.StatusSuccess},
					probe{token: forged, ctx: bg, code: mpauthx.StatusSuccess})
			case 3: // a live token, but the caller has given up
				probes = append(probes, probe{token: tok, ctx: cancelled, code: mpauthx.StatusDatabaseError},
					probe{token: tok[:len(tok)-len(sess)] + sess, ctx: bg, want: true, code: mpauthx.StatusSuccess})
			}
		}
		const goroutines, rounds = 64, 50
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for r := range rounds {
					p := probes[(g+r)%len(probes)]
					ok, err := e.c.IsTokenValid(p.ctx, p.token)
					if ok != p.want || mpauthx.Code(err) != p.code {
						t.Errorf("probe %d: IsTokenValid = %v, %v; want %v with code %d", (g+r)%len(probes), ok, err, p.want, p.code)
						return
					}
					if p.code != mpauthx.StatusSuccess && !errors.Is(err, context.Canceled) {
						t.Errorf("error %v does not wrap context.Canceled", err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

// stalledRedis accepts connections and reads from them but never
// answers, like a Redis that hangs. It is closed when t ends.
func stalledRedis(t *testing.T) string {
	l := newLoopback(t)
	l.serve(func(conn net.Conn) {
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	})
	return l.addr()
}

// checkOnlyClient returns a Client of Sku "sku" on rdb (see newWorld),
// for tests that only check tokens. The caller closes it (before rdb).
func checkOnlyClient(t *testing.T, rdb redis.UniversalClient) *mpauthx.Client {
	t.Helper()
	e := newWorld(t)
	e.cfg.Redis, e.cfg.Sku = rdb, "sku"
	e.open(t)
	return e.c
}

// TestIsTokenValidReturnsWhenCtxEnds checks that a check queued behind a
// Redis that does not answer returns when its own ctx ends, with its own
// ctx's error, although the batcher runs the read on a context of its
// own.
func TestIsTokenValidReturnsWhenCtxEnds(t *testing.T) {
	addr := stalledRedis(t)
	// Redis's timeouts are 1 s: returning well before shows that the calls
	// ended with their contexts, not with the connection.
	clients := []struct {
		name string
		open func() redis.UniversalClient
	}{
		{"client (MGET batches)", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{
				Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
				MaxRetries: -1, Protocol: 2, DisableIdentity: true,
			})
		}},
		{"ring (pipelined GETs)", func() redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{
				Addrs: map[string]string{"a": addr}, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
				MaxRetries: -1, Protocol: 2, DisableIdentity: true, HeartbeatFrequency: time.Hour,
			})
		}},
	}
	for _, kind := range clients {
		t.Run(kind.name, func(t *testing.T) {
			rdb := kind.open()
			defer rdb.Close()
			c := checkOnlyClient(t, rdb)
			defer c.Close()
			token := "o1|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ"

			deadline, cancel1 := context.WithTimeout(bg, 50*time.Millisecond)
			defer cancel1()
			cancelled, cancel2 := context.WithCancel(bg)
			tests := []struct {
				name string
				ctx  context.Context
				want error
			}{
				{"deadline", deadline, context.DeadlineExceeded},
				{"cancel", cancelled, context.Canceled},
			}
			start := time.Now()
			time.AfterFunc(80*time.Millisecond, cancel2)
			var wg sync.WaitGroup
			for _, tt := range tests {
				wg.Go(func() {
					ok, err := c.IsTokenValid(tt.ctx, token)
					if ok || mpauthx.Code(err) != mpauthx.StatusDatabaseError || !errors.Is(err, tt.want) {
						t.Errorf("%s: IsTokenValid = %v, %v; want false, a 6000 wrapping %v", tt.name, ok, err, tt.want)
					}
				})
			}
			wg.Wait()
			if d := time.Since(start); d > 800*time.Millisecond {
				t.Fatalf("the checks returned after %v", d)
			}
		})
	}
}

// TestPipelineIsPrivate checks that the Client neither takes over nor
// stops the autopipeliner go-redis caches on the caller's client, and that
// Close stops every goroutine the Client started.
func TestPipelineIsPrivate(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		tok := e.login(t, e.user("private"))
		u2 := e.user("private2")
		t.Cleanup(func() { // a shared Redis keeps nothing
			e.rdb.Del(bg, e.key(e.c.ExtractOpenID(tok)), e.key(u2.OpenID))
		})
		var theirs *redis.AutoPipeliner
		var err error
		switch r := e.rdb.(type) {
		case *redis.Client:
			theirs, err = r.AsyncAutoPipeline()
		case *redis.ClusterClient:
			theirs, err = r.AsyncAutoPipeline()
		default:
			t.Skipf("%T has no autopipeliner", r)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cfg := theirs.Config(); cfg.Unordered || cfg.MaxConcurrentBatches != 1 {
			t.Fatalf("the caller's autopipeliner has mpauthx's configuration: %+v", cfg)
		}

		// A lone check goes straight to the caller's client, which starts a
		// cluster node's goroutines the first time it uses that node: have
		// it use the nodes of both keys before the snapshot.
		for _, k := range []string{e.key(e.c.ExtractOpenID(tok)), e.key(u2.OpenID)} {
			e.rdb.Exists(bg, k)
		}
		before := goleak.IgnoreCurrent()
		c2, err := mpauthx.New(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if ok, err := c2.IsTokenValid(bg, tok); !ok || err != nil {
					t.Errorf("IsTokenValid = %v, %v", ok, err)
				}
			})
		}
		if _, err := c2.AuthorizeCode(bg, e.wx.Code(u2.OpenID)); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := c2.Close(); err != nil {
			t.Fatal(err)
		}
		// The connections c2 opened belong to the caller's pools and stay
		// open: on miniredis, the server's goroutines for them are in
		// this process.
		goleak.VerifyNone(t, before,
			goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
			goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"))

		key := "mpauthx-test:{" + e.cfg.Sku + "}:private"
		if err := theirs.Set(bg, key, "v", time.Minute).Err(); err != nil {
			t.Fatalf("the caller's autopipeliner after Close: %v", err)
		}
		defer e.rdb.Del(bg, key)
		if v, err := theirs.Get(bg, key).Result(); v != "v" || err != nil {
			t.Fatalf("the caller's autopipeliner after Close: %q, %v", v, err)
		}
		if ok, err := e.c.IsTokenValid(bg, tok); !ok || err != nil {
			t.Fatalf("the first Client after the second's Close: %v, %v", ok, err)
		}
	})
}

// ctxMarker marks the contexts of TestLoneCheckRunsOnCallersContext.
type ctxMarker struct{}

// markerHook records, for each GET or MGET it sees, whether it ran on a
// context carrying ctxMarker, that is on the caller's own context.
type markerHook struct {
	mu    sync.Mutex
	gets  int
	onOwn int
}

func (h *markerHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *markerHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(ctx, cmd)
		return next(ctx, cmd)
	}
}

func (h *markerHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.record(ctx, cmd)
		}
		return next(ctx, cmds)
	}
}

// record counts cmd if it is a GET or an MGET, and whether ctx is the
// caller's.
func (h *markerHook) record(ctx context.Context, cmd redis.Cmder) {
	if cmd.Name() != "get" && cmd.Name() != "mget" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gets++
	if ctx.Value(ctxMarker{}) != nil {
		h.onOwn++
	}
}

// TestLoneCheckRunsOnCallersContext checks which path a lone check takes:
// with a ctx that cannot end, a plain GET on the caller's context (no
// hand-off); with one that can, the batcher, which sends a batch of one
// (an MGET) on a context of its own so that the caller can stop waiting.
func TestLoneCheckRunsOnCallersContext(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	hook := &markerHook{}
	rdb.AddHook(hook) // before New, so that the reader's clone has it too
	c := checkOnlyClient(t, rdb)
	defer c.Close()
	token := "o1|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	forever := context.WithValue(context.Background(), ctxMarker{}, true)
	cancelable, cancel := context.WithCancel(forever)
	defer cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		plain bool
	}{
		{"ctx that cannot end", forever, true},
		{"ctx that can end", cancelable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.mu.Lock()
			hook.gets, hook.onOwn = 0, 0
			hook.mu.Unlock()
			if ok, err := c.IsTokenValid(tt.ctx, token); ok || err != nil {
				t.Fatalf("IsTokenValid = %v, %v; want false, nil", ok, err)
			}
			hook.mu.Lock()
			defer hook.mu.Unlock()
			if tt.plain && (hook.gets != 1 || hook.onOwn != 1) {
				t.Errorf("%d GETs, %d on the caller's context; want one plain GET on it", hook.gets, hook.onOwn)
			}
			if !tt.plain && (hook.gets != 1 || hook.onOwn != 0) {
				t.Errorf("%d reads, %d on the caller's context; want one, on the batcher's own", hook.gets, hook.onOwn)
			}
		})
	}
}

// benchGoRedisCSC measures the GETs of go-redis's own client-side cache
// (Options.ClientSideCacheConfig, RESP3, default tracking) on keys it
// already holds: what Config.LocalCache was compared with before mpauthx
// built its own (docs/localcache.md).
func benchGoRedisCSC(b *testing.B, r benchRedis, keys []string) {
	opt := *r.rdb.Options()
	opt.Protocol = 3
	opt.ClientSideCacheConfig = &redis.ClientSideCacheConfig{MaxEntries: 2 * len(keys)}
	csc := redis.NewClient(&opt)
	defer csc.Close()
	ctx := context.Background()
	for _, k := range keys { // fill the cache
		if err := csc.Get(ctx, k).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run(r.name+"/go-redis-CSC-GET-hit-64-goroutines", func(b *testing.B) {
		parallelCalls(b, func(i int) error { return csc.Get(ctx, keys[i%len(keys)]).Err() })
		reportRate(b, "GETs/s")
	})
	b.Run(r.name+"/go-redis-CSC-GET-hit-1-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := csc.Get(ctx, keys[i%len(keys)]).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchLocalCache measures IsTokenValid answered by Config.LocalCache:
// every token is held by the cache before the timing starts.
func benchLocalCache(b *testing.B, r benchRedis) {
	w := newCachedBenchWorld(b, r.rdb, benchUsers, 2*benchUsers)
	tokens := w.loginAll(b)
	warmLocalCache(b, w.c, tokens)
	check := func(ctx context.Context, i int) error {
		ok, err := w.c.IsTokenValid(ctx, tokens[i%len(tokens)])
		if err == nil && !ok {
			err = errors.New("a live token is not valid")
		}
		return err
	}
	b.Run(r.name+"/local-cache/64-goroutines", func(b *testing.B) {
		parallelCalls(b, func(i int) error { return check(context.Background(), i) })
		reportRate(b, "checks/s")
	})
	reqCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run(r.name+"/local-cache/1-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := check(reqCtx, i); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// warmLocalCache checks tokens on c until its local cache holds them all.
func warmLocalCache(b *testing.B, c *mpauthx.Client, tokens []string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, tok := range tokens {
		for !mpauthx.CacheHolds(c, tok) {
			if ok, err := c.IsTokenValid(context.Background(), tok); err != nil || !ok {
				b.Fatalf("IsTokenValid = %v, %v", ok, err)
			}
			if time.Now().After(deadline) {
				b.Fatal("the local cache does not fill")
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// BenchmarkLocalCacheRevocation measures how long a token revoked on
// one instance (A) stays valid on another (B) whose local cache held it,
// with B checking it in a loop that yields between checks: from A's
// RevokeToken returning to the return of B's last true (0 when B never
// said true again), and to the start of that check ("-started"): B's
// answer was decided in between, and a wide gap is the OS not running
// the process. (Up to B's first false would also count the time between
// two checks, which is not staleness.) Reported as p50, p99 and max (in
// µs) over b.N revocations; docs/localcache.md quotes them. Real Redis
// only (miniredis cannot track): the server of MPAUTHX_REDIS_ADDR
// ("redis") and the Cluster of MPAUTHX_REDIS_CLUSTER ("cluster"), each
// when set.
func BenchmarkLocalCacheRevocation(b *testing.B) {
	var targets []benchRedis
	if addr := os.Getenv(envRedisAddr); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		b.Cleanup(func() { rdb.Close() })
		targets = append(targets, benchRedis{name: "redis", rdb: rdb})
	}
	cc := benchClusterClient(b)
	if len(targets) == 0 && cc == nil {
		b.Skip("needs a real Redis: set " + envRedisAddr + " or " + envRedisCluster)
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) { benchRevocation(b, tg.rdb) })
	}
	if cc != nil {
		b.Run("cluster", func(b *testing.B) { benchRevocation(b, cc) })
	}
}

// benchRevocation is BenchmarkLocalCacheRevocation on rdb.
func benchRevocation(b *testing.B, rdb redis.UniversalClient) {
	w := newAnyBenchWorld(b, rdb, 1, 1000)
	cfg := w.cfg // the same Redis and Sku, a database of its own
	cfg.DB = tempSQLite(b)
	other, err := mpauthx.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { other.Close() })
	u := w.users[0]
	var ended, started []time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		res, err := w.c.AuthorizeCode(context.Background(), w.wx.Code(u.openID))
		if err != nil {
			b.Fatal(err)
		}
		warmLocalCache(b, other, []string{res.Response})
		b.StartTimer()
		if err := w.c.RevokeToken(context.Background(), res.Response); err != nil {
			b.Fatal(err)
		}
		revoked := time.Now()
		// The last check of B that said true, if one did after the revoke:
		// when it started and when it returned.
		lastStart, lastEnd := revoked, revoked
		for deadline := revoked.Add(10 * time.Second); ; {
			start := time.Now()
			ok, err := other.IsTokenValid(context.Background(), res.Response)
			end := time.Now()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			if lastStart, lastEnd = start, end; end.After(deadline) {
				b.Fatal("a revoked token is still valid on another instance after 10s")
			}
			// Yield between checks, as a request handler does when it
			// waits for its network: a loop that never yields keeps the
			// goroutine that reads Redis's invalidations waiting for a
			// processor (the cache's lease still bounds that wait).
			runtime.Gosched()
		}
		ended = append(ended, lastEnd.Sub(revoked))
		started = append(started, lastStart.Sub(revoked))
	}
	b.StopTimer()
	report := func(lat []time.Duration, suffix string) {
		slices.Sort(lat)
		q := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
		}
		b.ReportMetric(q(0.50), "p50-µs"+suffix)
		b.ReportMetric(q(0.99), "p99-µs"+suffix)
		b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs"+suffix)
	}
	report(ended, "")
	report(started, "-started")
}
