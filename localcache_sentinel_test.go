//go:build unix

package mpauthx_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// The local cache across a Sentinel failover, on real redis-sentinel: the
// set of MPAUTHX_SENTINEL ("<master name>@<sentinel addr>[,<addr>...]",
// which CI's .ci/services start), or else a primary, a replica and a
// Sentinel that the test starts from the binaries in PATH.

// envCacheSentinel names the Sentinel set the test may use.
const envCacheSentinel = "MPAUTHX_SENTINEL"

// cacheSentinelWait bounds the waits for a set to be whole again and for a
// failover; a failover of these sets takes a few seconds.
const cacheSentinelWait = 60 * time.Second

// cacheSentinel is a Sentinel set: the name the Sentinels know the
// primary by, and their addresses.
type cacheSentinel struct {
	t         *testing.T
	master    string
	sentinels []string
}

// newCacheSentinel returns MPAUTHX_SENTINEL's set once it is whole (a test
// before may have failed it over), or a set of the test's own. Without
// MPAUTHX_SENTINEL and without redis-sentinel in PATH the test is skipped,
// unless MPAUTHX_REDIS_ADDR is set: a run with a real Redis (CI) must run
// it.
func newCacheSentinel(t *testing.T) *cacheSentinel {
	t.Helper()
	if v := os.Getenv(envCacheSentinel); v != "" {
		markUsed(t, "sentinel")
		master, list, _ := strings.Cut(v, "@")
		s := &cacheSentinel{t: t, master: master}
		for a := range strings.SplitSeq(list, ",") {
			if a = strings.TrimSpace(a); a != "" {
				s.sentinels = append(s.sentinels, a)
			}
		}
		if master == "" || len(s.sentinels) == 0 {
			t.Fatalf("%s=%q: want <master name>@<sentinel addr>[,<sentinel addr>...]", envCacheSentinel, v)
		}
		s.waitWhole()
		return s
	}
	// redis-sentinel is Debian's package of its own; redis-server
	// --sentinel is the same program.
	bin, err := exec.LookPath("redis-sentinel")
	var mode []string
	if err != nil {
		bin, err = exec.LookPath("redis-server")
		mode = []string{"--sentinel"}
	}
	if err != nil {
		if os.Getenv(envRedisAddr) == "" {
			t.Skipf("neither redis-sentinel nor redis-server is in PATH (%v) and %s is unset: this test fails a Sentinel set over", err, envCacheSentinel)
		}
		t.Fatalf("neither redis-sentinel nor redis-server is in PATH (%v), but %s is set: a run with a real Redis must run the Sentinel test too (or set %s)", err, envRedisAddr, envCacheSentinel)
	}
	primary := startRedis(t)
	startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	p := &redisProc{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	conf := filepath.Join(p.dir, "sentinel.conf") // Sentinel rewrites it: a file of its own
	err = os.WriteFile(conf, fmt.Appendf(nil, `bind 127.0.0.1
port %d
dir %s
logfile %s
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 5000
`, p.port, p.dir, filepath.Join(p.dir, "redis.log"), primary.port), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.args = append([]string{conf}, mode...)
	t.Cleanup(p.cleanup)
	p.Start()
	s := &cacheSentinel{t: t, master: "mymaster", sentinels: []string{p.Addr()}}
	s.waitWhole()
	return s
}

// sentinel returns a client of the i-th Sentinel, closed when the test
// ends.
func (s *cacheSentinel) sentinel(i int) *redis.SentinelClient {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[i], DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	s.t.Cleanup(func() { sc.Close() })
	return sc
}

// primary returns the primary's address as the first Sentinel knows it.
func (s *cacheSentinel) primary() (string, error) {
	a, err := s.sentinel(0).GetMasterAddrByName(bg, s.master).Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}

// whole reports why the set is not whole (a primary that every Sentinel
// agrees on, no failover under way, a replica online and linked to it),
// or "" when it is.
func (s *cacheSentinel) whole() string {
	want, err := s.primary()
	if err != nil {
		return err.Error()
	}
	for i := range s.sentinels {
		sc := s.sentinel(i)
		m, err := sc.Master(bg, s.master).Result()
		if err != nil {
			return err.Error()
		}
		if m["flags"] != "master" || m["ip"]+":"+m["port"] != want {
			return fmt.Sprintf("Sentinel %d sees the primary %s:%s with flags %q", i, m["ip"], m["port"], m["flags"])
		}
		rs, err := sc.Replicas(bg, s.master).Result()
		if err != nil {
			return err.Error()
		}
		ok := false
		for _, r := range rs {
			ok = ok || r["flags"] == "slave" && r["master-link-status"] == "ok"
		}
		if !ok {
			return fmt.Sprintf("Sentinel %d sees no replica linked to the primary: %v", i, rs)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: want})
	defer rdb.Close()
	info, err := rdb.Info(bg, "replication").Result()
	if err != nil {
		return err.Error()
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, "state=online") {
		return "the primary has no replica online: " + info
	}
	return ""
}

// waitWhole waits until the set is whole.
func (s *cacheSentinel) waitWhole() {
	s.t.Helper()
	why := ""
	for deadline := time.Now().Add(cacheSentinelWait); ; time.Sleep(100 * time.Millisecond) {
		if why = s.whole(); why == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the Sentinel set is not whole after %v: %s", cacheSentinelWait, why)
		}
	}
}

// failover has the Sentinels promote the replica (SENTINEL FAILOVER: the
// old primary stays up and reachable, and stays a primary until a
// Sentinel reconfigures it, seconds later) and returns the new primary's
// address once the Sentinel names it.
func (s *cacheSentinel) failover() string {
	s.t.Helper()
	old, err := s.primary()
	if err != nil {
		s.t.Fatal(err)
	}
	sc := s.sentinel(0)
	deadline := time.Now().Add(cacheSentinelWait)
	for {
		err := sc.Failover(bg, s.master).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		if cur, err := s.primary(); err == nil && cur != old {
			return cur
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no new primary %v after SENTINEL FAILOVER", cacheSentinelWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client returns a go-redis failover client of the set, closed when the
// test ends.
func (s *cacheSentinel) client() *redis.Client {
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: s.master, SentinelAddrs: s.sentinels,
		ContextTimeoutEnabled: true, MaxRetries: 1, DialerRetries: 1,
	})
	s.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// servedBy reports whether rdb's commands reach the server at addr
// (host:port), by the port that server reports.
func servedBy(rdb *redis.Client, addr string) bool {
	info, err := rdb.Info(bg, "server").Result()
	if err != nil {
		return false
	}
	_, port, _ := strings.Cut(addr, ":")
	return strings.Contains(info, "tcp_port:"+port+"\r\n")
}

// TestLocalCacheSentinelFailover checks the staleness bound across a
// Sentinel failover that leaves the old primary up and reachable (for a
// few seconds it is still a primary, with every connection it had): once
// the instances' clients write to the new primary, a token revoked there
// stops validating on an instance whose cache held it within the bound,
// wherever that instance's link was, and the cache answers again after.
func TestLocalCacheSentinelFailover(t *testing.T) {
	s := newCacheSentinel(t)
	e := newWorld(t)
	e.cfg.LocalCache = cacheSize
	ra, rb := s.client(), s.client()
	e.rdb, e.cfg.Redis = ra, ra
	e.open(t)
	b := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = rb })
	u := e.user("kim")
	tok := e.login(t, u)
	holdOn(t, b, tok)

	primary := s.failover()
	for _, rdb := range []*redis.Client{ra, rb} {
		pollUntil(t, "writing to the new primary", func() bool { return servedBy(rdb, primary) })
	}
	pollUntil(t, "revoked", func() bool { return e.c.RevokeToken(bg, tok) == nil })
	neverStale(t, b, tok, time.Now())
	refusedOn(t, b, tok)
	var err error
	pollUntil(t, "logged in again", func() bool { tok, err = e.tryLogin(bg, u); return err == nil })
	holdOn(t, b, tok)
}
