//go:build unix

package mpauthx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/seeda8e74ca0/mpauthx"
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
	// The data nodes of a throwaway set, nil for MPAUTHX_SENTINEL's:
	// data[0] was the primary when the set started, data[1] its replica.
	data []*redisProc
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
// else (no failover in progress, not down), and knows a replica flagged
// as a slave and nothing else (not down, not disconnected), and the
// primary itself lists a replica online. (A Sentinel refreshes what it
// knows of a replica's own link every 10 s only, so that is read from the
// primary.)
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
		if !slices.ContainsFunc(replicas, func(r map[string]string) bool { return r["flags"] == "slave" }) {
			flags := make([]string, len(replicas))
			for j, r := range replicas {
				flags[j] = r["name"] + " " + r["flags"]
			}
			return false, fmt.Sprintf("sentinel %s: no replica of %s is up: %q", s.sentinels[i], primary, flags)
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

// Phases of TestSentinelFailoverUnderLoad, as the load's calls see them.
const (
	foUp      int32 = iota // the set is whole
	foFailing              // from the start of the failover until every kind of call works again
	foHealed               // every kind of call has worked again
)

// foCall is one call of TestSentinelFailoverUnderLoad's load.
type foCall struct {
	name       string
	start, end int32 // phases
	began      time.Time
	ended      time.Time
	took       time.Duration
	err        error
	token      string // the token a login returned, checked or revoked
	valid      bool   // IsTokenValid's answer
}

// TestSentinelFailoverUnderLoad fails a Sentinel set over while
// goroutines log users in, check and revoke tokens and read the access
// token, through a go-redis failover client: with SENTINEL FAILOVER, and
// by killing the primary (a throwaway set: the process is the test's).
// During the failover calls may fail, with 6000 and without hanging; once
// it heals (within a bound) every kind of call works again: the tokens
// issued before the failover began are still valid, no token whose
// RevokeToken returned nil is valid again, the access token is still the
// one shared through Redis, and closing the Client leaves no goroutine
// behind.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	const (
		workers     = 4
		callTimeout = 10 * time.Second // a hang guard: no call may need it
		healBound   = 60 * time.Second
		wantUp      = 40 // logins before the failover
		wantHealed  = 3 * workers
		preIssued   = 2000 // tokens to revoke during the failover
	)
	ways := []struct {
		name string
		own  bool // needs a throwaway set
		fail func(t *testing.T, s *sentinelSet)
	}{
		{"SENTINEL FAILOVER", false, func(t *testing.T, s *sentinelSet) { s.failover() }},
		{"primary killed", true, func(t *testing.T, s *sentinelSet) {
			old := s.primary()
			i := slices.IndexFunc(s.data, func(p *redisProc) bool { return p.Addr() == old })
			if i < 0 {
				t.Fatalf("the primary %s is none of the set's processes", old)
			}
			s.data[i].Kill()
			// Restart it once the failover has ended (the Sentinel's own
			// record of the primary is the new one): a primary that comes
			// back while the failover is still in progress may be taken
			// back, empty, as the primary (as Redis's documentation warns
			// for primaries without persistence that restart at once).
			sc := s.sentinel(0)
			for deadline := time.Now().Add(healBound); ; time.Sleep(20 * time.Millisecond) {
				m, err := sc.Master(bg, s.master).Result()
				if err == nil && net.JoinHostPort(m["ip"], m["port"]) != old && m["flags"] == "master" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the Sentinel has not ended the failover from the killed %s after %v: %v, %v", old, healBound, m, err)
				}
			}
			s.data[i].Start() // empty: the Sentinel makes it a replica of the new primary
		}},
	}
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			var s *sentinelSet
			if way.own {
				s = ownSentinelSet(t)
			} else {
				s = sentinelSetup(t)
			}
			e := newWorld(t)
			leaks := goleak.IgnoreCurrent()
			e.rdb = s.client(nil)
			e.cfg.Redis = e.rdb
			e.open(t)
			shared, err := e.c.AccessToken(bg)
			if err != nil {
				t.Fatalf("AccessToken: %v", err)
			}

			var (
				phase  atomic.Int32
				stop   = make(chan struct{})
				mu     sync.Mutex
				calls  []foCall
				count  [foHealed + 1]int // calls wholly inside each phase
				logins int
			)
			do := func(name string, f func(ctx context.Context) (foCall, error)) foCall {
				ctx, cancel := context.WithTimeout(bg, callTimeout)
				defer cancel()
				start, began := phase.Load(), time.Now()
				c, err := f(ctx)
				c.name, c.start, c.end, c.began, c.ended, c.err = name, start, phase.Load(), began, time.Now(), err
				c.took = c.ended.Sub(began)
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, c)
				if c.start == c.end {
					count[c.start]++
				}
				if name == "login" && err == nil {
					logins++
				}
				return c
			}
			counts := func() ([foHealed + 1]int, int) {
				mu.Lock()
				defer mu.Unlock()
				return count, logins
			}
			// Tokens issued before the failover, revoked by the load while
			// it runs: a revocation that reaches the old primary after the
			// replica took over must not return nil.
			pre := make(chan string, preIssued)
			for i := range preIssued {
				res, err := mpauthx.Issue(bg, e.c, fmt.Sprintf("opre%d-%s", i, e.cfg.Sku), "o", "sk")
				if err != nil {
					t.Fatal(err)
				}
				pre <- res.Response
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						u := e.user("fo")
						login := do("login", func(ctx context.Context) (foCall, error) {
							if (w+i)%2 == 0 {
								tok, err := e.tryLogin(ctx, u)
								return foCall{token: tok}, err
							}
							res, err := e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
							return foCall{token: res.Response}, err
						})
						if login.err == nil {
							do("IsTokenValid", func(ctx context.Context) (foCall, error) {
								ok, err := e.c.IsTokenValid(ctx, login.token)
								return foCall{token: login.token, valid: ok}, err
							})
							if i%3 == 0 {
								do("RevokeToken", func(ctx context.Context) (foCall, error) {
									return foCall{token: login.token}, e.c.RevokeToken(ctx, login.token)
								})
							}
						}
						if phase.Load() == foFailing {
							select {
							case tok := <-pre:
								do("RevokeToken", func(ctx context.Context) (foCall, error) {
									return foCall{token: tok}, e.c.RevokeToken(ctx, tok)
								})
							default:
							}
						}
						if i%5 == 0 {
							do("AccessToken", func(ctx context.Context) (foCall, error) {
								at, err := e.c.AccessToken(ctx)
								return foCall{token: at}, err
							})
						}
						time.Sleep(2 * time.Millisecond) // a steady load, not a spin
					}
				})
			}
			stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
			t.Cleanup(stopLoad)
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				for deadline := time.Now().Add(healBound); !cond(); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						n, l := counts()
						t.Fatalf("after %v: not %s (calls per phase %v, logins %d)", healBound, what, n, l)
					}
				}
			}
			waitFor("enough logins before the failover", func() bool { _, l := counts(); return l >= wantUp })

			// Every call that returned before this moment is on the
			// replica once a write made now is: the stream is ordered.
			marked := time.Now()
			replicated(t, s.primary())
			phase.Store(foFailing)
			failStart := time.Now()
			old := s.primary()
			way.fail(t, s)
			probe := e.user("probe")
			var lastErr error
			healed := func() bool {
				ctx, cancel := context.WithTimeout(bg, callTimeout)
				defer cancel()
				tok, err := e.tryLogin(ctx, probe)
				if lastErr = err; err != nil {
					return false
				}
				var ok bool
				if ok, lastErr = e.c.IsTokenValid(ctx, tok); !ok || lastErr != nil {
					return false
				}
				res, err := e.c.RefreshToken(ctx, probe.OpenID)
				if lastErr = err; err != nil {
					return false
				}
				lastErr = e.c.RevokeToken(ctx, res.Response)
				return lastErr == nil
			}
			// Healed once the old primary takes no more writes (a replica,
			// or dead) and every kind of call works.
			for !demoted(old) || !healed() {
				if time.Since(failStart) > healBound {
					t.Fatalf("calls still fail %v after the failover began: %v", healBound, lastErr)
				}
				time.Sleep(10 * time.Millisecond)
			}
			healTime := time.Since(failStart)
			phase.Store(foHealed)
			waitFor("enough calls after the failover healed", func() bool { n, _ := counts(); return n[foHealed] >= wantHealed })
			stopLoad()

			var failed int
			revoked := map[string]bool{}
			for _, c := range calls {
				whole := c.start == c.end && c.start != foFailing
				switch {
				case c.err != nil && c.name == "AccessToken":
					t.Errorf("AccessToken (phases %d..%d): %v; it must not need Redis", c.start, c.end, c.err)
				case c.err != nil && (mpauthx.Code(c.err) != mpauthx.StatusDatabaseError || errors.Is(c.err, context.DeadlineExceeded)):
					t.Errorf("%s (phases %d..%d, %v): %v; want a 6000 without a deadline", c.name, c.start, c.end, c.took, c.err)
				case c.err != nil && whole:
					t.Errorf("%s failed while the set was whole (phase %d): %v", c.name, c.start, c.err)
				case c.err == nil && c.name == "IsTokenValid" && !c.valid && whole:
					t.Errorf("IsTokenValid of a new token = false (phase %d)", c.start)
				case c.err == nil && c.name == "AccessToken" && c.token != shared:
					t.Errorf("AccessToken (phases %d..%d) gave another token than the shared one", c.start, c.end)
				}
				if c.err != nil {
					failed++
				}
				if c.name == "RevokeToken" && c.err == nil {
					revoked[c.token] = true
				}
			}
			var before, during, lost int
			for _, c := range calls {
				if c.name != "login" || c.err != nil || revoked[c.token] {
					continue
				}
				ok := e.valid(t, c.token)
				switch {
				case c.ended.Before(marked):
					before++
					if !ok {
						t.Errorf("a token issued before the failover began is lost")
					}
				case c.start == foHealed:
					if !ok {
						t.Errorf("a token issued after the failover healed is not valid")
					}
				default:
					during++
					if !ok { // lost with the old primary: a new login must work
						lost++
						u := e.c.ExtractOpenID(c.token)
						res, err := e.c.AuthorizeCode(bg, e.wx.Code(u))
						if err != nil || !e.valid(t, res.Response) {
							t.Errorf("a user whose token was lost in the failover cannot log in again: %v", err)
						}
					}
				}
			}
			for tok := range revoked {
				if e.valid(t, tok) {
					t.Errorf("a token whose RevokeToken returned nil is valid again after the failover")
				}
			}
			at, err := e.c.AccessToken(bg)
			if err != nil || at != shared {
				t.Errorf("AccessToken after the failover = %v; want the shared token", err)
			}
			other := e.client(t, func(cfg *mpauthx.Config) { cfg.DB = tempSQLite(t) })
			reqs := e.wx.AccessTokenRequests()
			if at, err := other.AccessToken(bg); err != nil || at != shared || e.wx.AccessTokenRequests() != reqs {
				t.Errorf("a new instance's AccessToken after the failover = %v, shared %t, %d stable_token requests; want the shared token from Redis", err, at == shared, e.wx.AccessTokenRequests()-reqs)
			}
			t.Logf("%d calls, %d failed during the failover; healed %v after it began; %d tokens from before, %d from during it (%d lost, logged in again), %d revoked (%d issued before the failover)",
				len(calls), failed, healTime, before, during, lost, len(revoked), preIssued-len(pre))

			other.Close()
			e.c.Close()
			e.rdb.Close()
			sqlOpener := goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener") // other's DB closes in Cleanup, later
			for end := time.Now().Add(3 * time.Second); goleak.Find(leaks, sqlOpener) != nil && time.Now().Before(end); {
				time.Sleep(50 * time.Millisecond)
			}
			goleak.VerifyNone(t, leaks, sqlOpener)
			s.waitWhole()
		})
	}
}

// demoted reports whether the Redis at addr no longer takes writes: it
// is a replica, or does not answer.
func demoted(addr string) bool {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	role, err := rdb.Do(bg, "ROLE").Slice()
	return err != nil || len(role) == 0 || role[0] != "master"
}

// replicated writes a marker to the primary at addr and waits until a
// replica acknowledges it (WAIT 1 on the same connection): everything the
// primary acknowledged before is then on that replica too.
func replicated(t *testing.T, addr string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	conn := rdb.Conn()
	defer conn.Close()
	if err := conn.Set(bg, "mpauthx-test:marker", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(bg, 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 on the primary %s = %d, %v", addr, n, err)
	}
}
