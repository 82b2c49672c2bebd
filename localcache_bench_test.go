package mpauthx_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// newAnyBenchWorld is newCachedBenchWorld on any Redis client: a
// *redis.Client or a *redis.ClusterClient.
func newAnyBenchWorld(b *testing.B, rdb redis.UniversalClient, n, localCache int) *benchWorld {
	b.Helper()
	if r, ok := rdb.(*redis.Client); ok {
		return newCachedBenchWorld(b, r, n, localCache)
	}
	w := &benchWorld{env: newWorld(b)}
	w.rdb = rdb
	w.cfg.Redis, w.cfg.Sku, w.cfg.TokenTTL = rdb, "bench-"+rand.Text()[:10], 10*time.Minute
	w.cfg.LocalCache = localCache
	w.open(b)
	w.users = make([]benchUser, n)
	for i := range w.users {
		u := w.user("bench" + strconv.Itoa(i))
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

// benchClusterClient returns a client of the Redis Cluster of
// MPAUTHX_REDIS_CLUSTER, closed when b ends, or nil when it is unset.
func benchClusterClient(b *testing.B) *redis.ClusterClient {
	addrs := os.Getenv(envRedisCluster)
	if addrs == "" {
		return nil
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	b.Cleanup(func() { cc.Close() })
	return cc
}

// clusterCommands returns how many commands the masters of cc have run,
// INFO itself excepted (INFO commandstats).
func clusterCommands(b *testing.B, cc *redis.ClusterClient) int64 {
	var mu sync.Mutex
	var n int64
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		s, err := m.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		for line := range strings.Lines(s) {
			if !strings.HasPrefix(line, "cmdstat_") || strings.HasPrefix(line, "cmdstat_info:") {
				continue
			}
			_, rest, _ := strings.Cut(line, "calls=")
			calls, _, _ := strings.Cut(rest, ",")
			c, _ := strconv.ParseInt(calls, 10, 64)
			mu.Lock()
			n += c
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkLocalCacheCluster measures IsTokenValid on the Redis Cluster
// of MPAUTHX_REDIS_CLUSTER without and with Config.LocalCache, side by
// side in one run, on the same tokens (benchUsers of them, checked again
// and again, all held by the cache), with 64 goroutines and with one. It
// reports the commands the masters ran per check (redis-cmds/check), every
// command of the run included: with the cache, the links' PINGs, the
// polls' CLUSTER NODES and the fills' PTTLs.
func BenchmarkLocalCacheCluster(b *testing.B) {
	cc := benchClusterClient(b)
	if cc == nil {
		b.Skip("needs a Redis Cluster: set " + envRedisCluster)
	}
	markUsed(b, "cluster")
	w := newAnyBenchWorld(b, cc, benchUsers, 0)
	tokens := w.loginAll(b)
	cfg := w.cfg
	cfg.LocalCache = 2 * benchUsers
	cached, err := mpauthx.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cached.Close() })
	warmLocalCache(b, cached, tokens)
	for _, m := range []struct {
		name string
		c    *mpauthx.Client
	}{{"no-cache", w.c}, {"local-cache", cached}} {
		check := func(i int) error {
			ok, err := m.c.IsTokenValid(context.Background(), tokens[i%len(tokens)])
			if err == nil && !ok {
				err = errors.New("a live token is not valid")
			}
			return err
		}
		b.Run("cluster/"+m.name+"/64-goroutines", func(b *testing.B) {
			before := clusterCommands(b, cc)
			parallelCalls(b, check)
			b.StopTimer()
			reportRate(b, "checks/s")
			b.ReportMetric(float64(clusterCommands(b, cc)-before)/float64(b.N), "redis-cmds/check")
		})
		b.Run("cluster/"+m.name+"/1-goroutine", func(b *testing.B) {
			b.ReportAllocs()
			before := clusterCommands(b, cc)
			for i := 0; b.Loop(); i++ {
				if err := check(i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(clusterCommands(b, cc)-before)/float64(b.N), "redis-cmds/check")
		})
	}
}
