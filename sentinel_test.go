//go:build unix

package mpauthx_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// envSentinel names a Redis Sentinel set for the suite, as
// "<master name>@<sentinel addr>[,<sentinel addr>...]":
// .ci/services/40-redis-sentinel.sh starts a primary, a replica and three
// Sentinels and sets it. Without it, the Sentinel tests start a throwaway
// set of their own when redis-server and redis-sentinel are in PATH.
const envSentinel = "MPAUTHX_SENTINEL"

// sentinelHealTimeout bounds the wait for a set to be whole again (a
// primary, a replica linked to it, no failover in progress); a failover
// of the sets used here takes a few seconds.
const sentinelHealTimeout = 60 * time.Second

// sentinelDataArgs are the arguments of the primary and the replica of a
// throwaway set: a replica (re)syncs at once, without the default 5 s
// wait for more replicas to share the transfer.
var sentinelDataArgs = []string{"--repl-diskless-sync-delay", "0"}

// sentinelSet is a Redis primary with a replica, watched by Sentinels: the
// set of MPAUTHX_SENTINEL, or a throwaway one a test started (then its
// processes are at hand, and are killed when the test ends).
type sentinelSet struct {
	t         *testing.T
	master    string   // the name the Sentinels know the primary by
	sentinels []string // the Sentinels' addresses
	// The processes of a throwaway set, nil for MPAUTHX_SENTINEL's:
	// data[0] was the primary when the set started, data[1] its replica.
	data []*redisProc
	sent []*redisProc
}

// parseSentinel splits MPAUTHX_SENTINEL's value.
func parseSentinel(v string) (master string, addrs []string, err error) {
	master, list, ok := strings.Cut(v, "@")
	if ok {
		for a := range strings.SplitSeq(list, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	if master == "" || len(addrs) == 0 {
		return "", nil, fmt.Errorf("%s=%q: want <master name>@<sentinel addr>[,<sentinel addr>...]", envSentinel, v)
	}
	return master, addrs, nil
}

// sentinelSetup returns the Sentinel set of MPAUTHX_SENTINEL, once it is
// whole (a test before may have failed it over), or else a throwaway set
// started by ownSentinelSet.
func sentinelSetup(t *testing.T) *sentinelSet {
	t.Helper()
	v := os.Getenv(envSentinel)
	if v == "" {
		return ownSentinelSet(t)
	}
	markUsed(t, "sentinel")
	master, addrs, err := parseSentinel(v)
	if err != nil {
		t.Fatal(err)
	}
	s := &sentinelSet{t: t, master: master, sentinels: addrs}
	s.waitWhole()
	return s
}

// ownSentinelSet starts a throwaway Sentinel set: a primary, one replica
// and one Sentinel (quorum 1), each a process of the test's on a free
// loopback port, killed when the test ends. The test is skipped when
// redis-server or redis-sentinel is not in PATH, unless MPAUTHX_REDIS_ADDR
// is set (a run with a real Redis, as CI, must run the Sentinel tests).
func ownSentinelSet(t *testing.T) *sentinelSet {
	t.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		if os.Getenv(envRedisAddr) == "" {
			t.Skipf("redis-sentinel is not in PATH (%v): this test fails a Redis Sentinel set over; install redis-server and redis-sentinel, or set %s", err, envSentinel)
		}
		t.Fatalf("redis-sentinel is not in PATH (%v), but %s is set: a run with a real Redis must run the Sentinel tests too", err, envRedisAddr)
	}
	primary := startRedis(t, sentinelDataArgs...)
	replica := startRedis(t, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}, sentinelDataArgs...)...)
	s := &sentinelSet{t: t, master: "mymaster", data: []*redisProc{primary, replica}}
	waitLinked(t, primary.Addr(), replica.Addr())

	p := &redisProc{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	conf := filepath.Join(p.dir, "sentinel.conf")
	// Sentinel rewrites its configuration file: it must be writable.
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`bind 127.0.0.1
port %d
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %[4]s 1000
sentinel failover-timeout %[4]s 5000
`, p.port, p.dir, filepath.Join(p.dir, "redis.log"), s.master, primary.port)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.args = []string{conf}
	t.Cleanup(p.cleanup)
	p.Start()
	s.sent = []*redisProc{p}
	s.sentinels = []string{p.Addr()}
	s.waitWhole()
	return s
}

// sentinel returns a plain client of the i-th Sentinel, closed when the
// test ends.
func (s *sentinelSet) sentinel(i int) *redis.SentinelClient {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[i], DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	s.t.Cleanup(func() { sc.Close() })
	return sc
}

// client returns a go-redis failover client of the set, with the options
// operations.md recommends, changed by tweak (when not nil). It is closed
// when the test ends (closing it again is harmless).
func (s *sentinelSet) client(tweak func(*redis.FailoverOptions)) *redis.Client {
	opt := &redis.FailoverOptions{
		MasterName:            s.master,
		SentinelAddrs:         s.sentinels,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialerRetries:         1,
	}
	if tweak != nil {
		tweak(opt)
	}
	rdb := redis.NewFailoverClient(opt)
	s.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// primary returns the address the first Sentinel names as the primary.
func (s *sentinelSet) primary() string {
	s.t.Helper()
	addr, err := s.primaryErr(s.sentinel(0))
	if err != nil {
		s.t.Fatal(err)
	}
	return addr
}

func (s *sentinelSet) primaryErr(sc *redis.SentinelClient) (string, error) {
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(ctx, s.master).Result()
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s: %w", s.master, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME %s = %q", s.master, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// whole reports, with the reason when not, whether the set is whole:
// every Sentinel names the same primary, flagged as a master and nothing
// else (no failover in progress, not down), with a replica flagged as a
// slave and nothing else, and the primary itself sees a replica online.
func (s *sentinelSet) whole(scs []*redis.SentinelClient) (bool, string) {
	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	var primary string
	for i, sc := range scs {
		addr, err := s.primaryErr(sc)
		if err != nil {
			return false, err.Error()
		}
		if i > 0 && addr != primary {
			return false, fmt.Sprintf("the Sentinels name %s and %s as primary", primary, addr)
		}
		primary = addr
		m, err := sc.Master(ctx, s.master).Result()
		if err != nil {
			return false, fmt.Sprintf("SENTINEL MASTER: %v", err)
		}
		if m["flags"] != "master" { // "master,failover_in_progress" during a failover
			return false, fmt.Sprintf("sentinel %s: the primary %s has flags %q", s.sentinels[i], addr, m["flags"])
		}
		replicas, err := sc.Replicas(ctx, s.master).Result()
		if err != nil {
			return false, fmt.Sprintf("SENTINEL REPLICAS: %v", err)
		}
		if !slices.ContainsFunc(replicas, func(r map[string]string) bool {
			return r["flags"] == "slave" && r["master-link-status"] == "ok" &&
				net.JoinHostPort(r["master-host"], r["master-port"]) == primary
		}) {
			return false, fmt.Sprintf("sentinel %s: no replica of %s online: %v", s.sentinels[i], primary, replicas)
		}
	}
	n, err := onlineReplicas(ctx, primary)
	if err != nil || n == 0 {
		return false, fmt.Sprintf("the primary %s has %d replicas online (%v)", primary, n, err)
	}
	return true, ""
}

// waitWhole waits until the set is whole (see whole), failing the test
// after sentinelHealTimeout.
func (s *sentinelSet) waitWhole() {
	s.t.Helper()
	scs := make([]*redis.SentinelClient, len(s.sentinels))
	for i := range scs {
		scs[i] = s.sentinel(i)
	}
	for deadline := time.Now().Add(sentinelHealTimeout); ; time.Sleep(50 * time.Millisecond) {
		ok, why := s.whole(scs)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the Sentinel set %s@%s is not whole after %v: %s", s.master, strings.Join(s.sentinels, ","), sentinelHealTimeout, why)
		}
	}
}

// failover makes the first Sentinel fail the set over (SENTINEL
// FAILOVER, retried while a failover is still in progress or no replica
// is good yet), waits until it names another primary and returns the old
// and the new one. It does not wait for the set to be whole again.
func (s *sentinelSet) failover() (from, to string) {
	s.t.Helper()
	sc := s.sentinel(0)
	from = s.primary()
	deadline := time.Now().Add(sentinelHealTimeout)
	for {
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		err := sc.Failover(ctx, s.master).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("SENTINEL FAILOVER %s: %v", s.master, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		if to, err := s.primaryErr(sc); err == nil && to != from {
			return from, to
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the Sentinel still names %s as primary %v after SENTINEL FAILOVER", from, sentinelHealTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// onlineReplicas returns the number of replicas the Redis at addr lists
// in ROLE: those online, which WAIT counts.
func onlineReplicas(ctx context.Context, addr string) (int, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	role, err := rdb.Do(ctx, "ROLE").Slice()
	if err != nil {
		return 0, err
	}
	if len(role) < 3 || role[0] != "master" {
		return 0, fmt.Errorf("ROLE of %s = %v: not a master", addr, role)
	}
	replicas, _ := role[2].([]any)
	return len(replicas), nil
}

// waitLinked waits until the replica at replica has synced with the
// primary at primary and the primary lists it in ROLE.
func waitLinked(t *testing.T, primary, replica string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: replica, MaxRetries: -1})
	defer rdb.Close()
	for deadline := time.Now().Add(sentinelHealTimeout); ; time.Sleep(20 * time.Millisecond) {
		info, err := rdb.Info(bg, "replication").Result()
		n, rerr := onlineReplicas(bg, primary)
		if err == nil && strings.Contains(info, "master_link_status:up") && rerr == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica %s did not sync with %s within %v: %v, %v\n%s", replica, primary, sentinelHealTimeout, err, rerr, info)
		}
	}
}

// TestSentinelEveryCall runs each Client call on a go-redis failover
// client of a Sentinel set: logins, checks, refresh, revoke and the
// access token.
func TestSentinelEveryCall(t *testing.T) {
	s := sentinelSetup(t)
	e := newWorld(t)
	e.rdb = s.client(nil)
	e.cfg.Redis = e.rdb
	e.open(t)

	u := e.user("sentinel")
	tok := e.login(t, u)
	if !e.valid(t, tok) {
		t.Fatal("IsTokenValid(new token) = false")
	}
	res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
	if err != nil || res.Response != tok {
		t.Fatalf("AuthorizeCode of a user with a live token = %v, %v; want the same token", res.Response == tok, err)
	}
	res, err = e.c.RefreshToken(bg, u.OpenID)
	if err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	if e.valid(t, tok) || !e.valid(t, res.Response) {
		t.Fatal("after RefreshToken the old token is valid or the new one is not")
	}
	if err := e.c.RevokeToken(bg, res.Response); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if e.valid(t, res.Response) {
		t.Fatal("IsTokenValid(revoked token) = true")
	}
	at, err := e.c.AccessToken(bg)
	if err != nil || at != e.wx.AccessToken() {
		t.Fatalf("AccessToken = %v; want the fake WeChat's current token", err)
	}
}
