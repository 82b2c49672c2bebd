package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// benchTokens is how many users' tokens the cached checks cycle through.
const benchTokens = 200

// cachedClient returns a Client with Config.LocalCache on the real Redis
// rdb, and benchTokens tokens its cache holds; with otel set, its
// Config.MeterProvider is the Prometheus wiring and its TracerProvider an
// SDK one sampling everything. Its keys are deleted when b ends.
func cachedClient(b *testing.B, rdb *redis.Client, otel bool) (*mpauthx.Client, []string) {
	wx := mpauthxtest.NewServer("wx-bench-otel-"+rand.Text()[:8], "bench-secret")
	b.Cleanup(wx.Close)
	db, err := mpauthx.OpenSQLite(filepath.Join(b.TempDir(), "users.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cfg := mpauthx.Config{AppID: wx.AppID, AppSecret: wx.AppSecret, APIBase: wx.URL, Sku: "bench-" + rand.Text()[:10],
		Redis: rdb, DB: db, LocalCache: 2 * benchTokens, TokenTTL: 10 * time.Minute}
	if otel {
		mp, _, err := prometheusMetrics()
		if err != nil {
			b.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
		cfg.MeterProvider, cfg.TracerProvider = mp, tp
	}
	c, err := mpauthx.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	tokens := make([]string, benchTokens)
	keys := make([]string, 0, 2*benchTokens)
	for i := range tokens {
		u := wx.AddUser(mpauthxtest.User{OpenID: "o-bench-" + rand.Text()[:12]})
		res, err := c.AuthorizeCode(ctx, wx.Code(u.OpenID))
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = res.Response
		keys = append(keys, "mpauthx:{"+u.OpenID+"|"+cfg.Sku+"}:session", "mpauthx:{"+u.OpenID+"|"+cfg.Sku+"}:sk")
	}
	b.Cleanup(func() { rdb.Unlink(context.Background(), keys...) })
	// Check until one whole pass is answered by the cache.
	for deadline := time.Now().Add(30 * time.Second); ; {
		before := c.Stats().CacheHits
		for _, tok := range tokens {
			if ok, err := c.IsTokenValid(ctx, tok); err != nil || !ok {
				b.Fatalf("IsTokenValid = %v, %v", ok, err)
			}
		}
		if c.Stats().CacheHits-before == benchTokens {
			return c, tokens
		}
		if time.Now().After(deadline) {
			b.Fatal("the local cache does not fill")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkCachedCheck compares a cached IsTokenValid without and with
// OpenTelemetry providers set (the SDK, Prometheus exporter and a tracer
// sampling everything), side by side, on one goroutine and on 64: a check
// records nothing, so both stay at 0 allocs and the same time. It needs a
// real Redis for Config.LocalCache:
//
//	MPAUTHX_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench CachedCheck -benchmem -count 6
func BenchmarkCachedCheck(b *testing.B) {
	addr := os.Getenv("MPAUTHX_REDIS_ADDR")
	if addr == "" {
		b.Skip("needs a real Redis for Config.LocalCache: set MPAUTHX_REDIS_ADDR")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { rdb.Close() })
	type setup struct {
		name   string
		c      *mpauthx.Client
		tokens []string
	}
	var setups []setup
	for _, otel := range []bool{false, true} {
		name := "no-providers"
		if otel {
			name = "otel-sdk"
		}
		c, tokens := cachedClient(b, rdb, otel)
		setups = append(setups, setup{name, c, tokens})
	}
	ctx, cancel := context.WithCancel(context.Background()) // a request's: it can end
	defer cancel()
	for _, s := range setups {
		b.Run("1-goroutine/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			hits := s.c.Stats().CacheHits
			for i := 0; b.Loop(); i++ {
				if ok, err := s.c.IsTokenValid(ctx, s.tokens[i%len(s.tokens)]); err != nil || !ok {
					b.Fatalf("IsTokenValid = %v, %v", ok, err)
				}
			}
			reportHits(b, s.c, hits)
		})
	}
	for _, s := range setups {
		b.Run("64-goroutines/"+s.name, func(b *testing.B) {
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((64 + procs - 1) / procs)
			b.ReportAllocs()
			hits := s.c.Stats().CacheHits
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ok, err := s.c.IsTokenValid(ctx, s.tokens[int(next.Add(1))%len(s.tokens)]); err != nil || !ok {
						b.Errorf("IsTokenValid = %v, %v", ok, err)
						return
					}
				}
			})
			reportHits(b, s.c, hits)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
		})
	}
}

// reportHits reports the share of b's checks the cache answered.
func reportHits(b *testing.B, c *mpauthx.Client, before uint64) {
	b.ReportMetric(100*float64(c.Stats().CacheHits-before)/float64(b.N), "%hits")
}

// BenchmarkCachedCheckPaired runs the cached checks of both Clients
// (without and with OpenTelemetry providers) in alternating blocks of
// 256 on one goroutine, and reports each one's time per check and their
// ratio: on a machine that other work slows down now and then, both see
// the same slowdowns, which separate runs do not. (With 64 goroutines a
// block's time is mostly waiting for a core: BenchmarkCachedCheck
// measures that case.)
func BenchmarkCachedCheckPaired(b *testing.B) {
	addr := os.Getenv("MPAUTHX_REDIS_ADDR")
	if addr == "" {
		b.Skip("needs a real Redis for Config.LocalCache: set MPAUTHX_REDIS_ADDR")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { rdb.Close() })
	plain, plainTokens := cachedClient(b, rdb, false)
	withOtel, otelTokens := cachedClient(b, rdb, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const block = 256
	// run checks n tokens on c from i on, and returns the time it took.
	run := func(c *mpauthx.Client, tokens []string, i, n int) time.Duration {
		start := time.Now()
		for j := range n {
			if ok, err := c.IsTokenValid(ctx, tokens[(i+j)%len(tokens)]); err != nil || !ok {
				b.Errorf("IsTokenValid = %v, %v", ok, err)
			}
		}
		return time.Since(start)
	}
	b.Run("1-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		var plainT, otelT time.Duration
		var n int64
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 { // each goes first as often
				plainT += run(plain, plainTokens, i*block, block)
				otelT += run(withOtel, otelTokens, i*block, block)
			} else {
				otelT += run(withOtel, otelTokens, i*block, block)
				plainT += run(plain, plainTokens, i*block, block)
			}
			n += block
		}
		b.ReportMetric(float64(plainT)/float64(n), "ns/check-no-providers")
		b.ReportMetric(float64(otelT)/float64(n), "ns/check-otel-sdk")
		b.ReportMetric(float64(otelT)/float64(plainT), "otel/none")
	})
}
