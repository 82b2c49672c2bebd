//go:build unix

package mpauthx_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// BenchmarkChecksClusterVsOne measures IsTokenValid with 64 goroutines on
// the Redis at MPAUTHX_REDIS_ADDR and on the Redis Cluster at
// MPAUTHX_REDIS_CLUSTER, one after the other in the same process, on
// benchUsers live tokens each: checks/s, and what a check costs in CPU
// time, in this process ("client-cpu-µs/op") and in Redis ("redis-cpu-
// µs/op", from INFO cpu, summed over the Cluster's masters). On a machine
// shared with other work, where rates drift from one minute to the next,
// the CPU a check costs is the steadier figure (docs/performance.md).
func BenchmarkChecksClusterVsOne(b *testing.B) {
	addr, seeds := os.Getenv(envRedisAddr), os.Getenv(envRedisCluster)
	if addr == "" || seeds == "" {
		b.Skipf("needs %s and %s", envRedisAddr, envRedisCluster)
	}
	targets := []struct {
		name string
		rdb  redis.UniversalClient
	}{
		{"one-redis", redis.NewClient(&redis.Options{Addr: addr})},
		{"cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(seeds, ",")})},
	}
	for _, tg := range targets {
		b.Cleanup(func() { tg.rdb.Close() })
		e := newWorld(b)
		e.rdb = tg.rdb
		e.cfg.Redis, e.cfg.Sku, e.cfg.TokenTTL = tg.rdb, "bench-"+rand.Text()[:10], 10*time.Minute
		e.open(b)
		tokens := make([]string, benchUsers)
		for i := range tokens {
			id := "obench" + strconv.Itoa(i) + "-" + rand.Text()[:8]
			res, err := mpauthx.Issue(bg, e.c, id, id, "sk")
			if err != nil {
				b.Fatal(err)
			}
			tokens[i] = res.Response
		}
		b.Cleanup(func() {
			ctx := context.Background()
			tg.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, tok := range tokens {
					id := e.c.ExtractOpenID(tok)
					p.Unlink(ctx, e.key(id))
					p.Unlink(ctx, "mpauthx:{"+id+"|"+e.cfg.Sku+"}:sk")
				}
				return nil
			})
		})
		b.Run(tg.name+"/64-goroutines", func(b *testing.B) {
			client0, redis0 := processCPU(b), redisCPU(b, tg.rdb)
			parallelCalls(b, func(i int) error {
				ok, err := e.c.IsTokenValid(context.Background(), tokens[i%len(tokens)])
				if err == nil && !ok {
					err = errors.New("a live token is not valid")
				}
				return err
			})
			b.StopTimer()
			reportRate(b, "checks/s")
			n := float64(b.N)
			b.ReportMetric(float64((processCPU(b)-client0).Microseconds())/n, "client-cpu-µs/op")
			b.ReportMetric(float64((redisCPU(b, tg.rdb)-redis0).Microseconds())/n, "redis-cpu-µs/op")
		})
	}
}

// processCPU returns the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU time the Redis of rdb has used (every master
// of a Cluster), from INFO cpu.
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	var (
		mu    sync.Mutex
		total time.Duration
	)
	one := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		var sum float64
		for line := range strings.Lines(info) {
			name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("INFO cpu: %s: %w", line, err)
				}
				sum += f
			}
		}
		mu.Lock()
		total += time.Duration(sum * float64(time.Second))
		mu.Unlock()
		return nil
	}
	var err error
	switch r := rdb.(type) {
	case *redis.Client:
		err = one(bg, r)
	case *redis.ClusterClient:
		err = r.ForEachMaster(bg, one)
	}
	if err != nil {
		b.Fatal(err)
	}
	return total
}
