//go:build unix

package mpauthx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// linkProxy stands between a replica and its primary on loopback: what
// the replica sends goes through at once; what the primary sends (the
// replication stream) is held back for a delay the test sets, or until
// further notice. cut drops what it holds and closes every connection, as
// a primary that dies takes its unsent stream with it. It stops when the
// test ends.
type linkProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	delay  atomic.Int64 // ns; negative: hold everything
	done   chan struct{}
	cutted sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

// newLinkProxy listens on a loopback port for connections to target.
func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{t: t, ln: ln, target: target, done: make(chan struct{})}
	t.Cleanup(p.cut)
	p.wg.Go(p.accept)
	return p
}

// port is the proxy's port, for the replica's --replicaof.
func (p *linkProxy) port() string {
	return strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port)
}

// setDelay holds what the primary sends for d from now on; a negative d
// holds it until the next setDelay.
func (p *linkProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

// cut closes the listener and every connection, drops what is held back
// and waits for the proxy's goroutines.
func (p *linkProxy) cut() {
	p.cutted.Do(func() {
		close(p.done)
		p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	p.wg.Wait()
}

// keep records c so that cut closes it; it closes c at once after cut.
func (p *linkProxy) keep(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		c.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *linkProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			down.Close()
			continue
		}
		if !p.keep(down) || !p.keep(up) {
			continue
		}
		p.wg.Go(func() { io.Copy(up, down) }) // the replica's side: at once
		p.wg.Go(func() { p.holdBack(up, down) })
	}
}

// chunk is a piece of the primary's stream and when it was read.
type chunk struct {
	b  []byte
	at time.Time
}

// holdBack copies from to to, each piece once its delay has passed.
func (p *linkProxy) holdBack(from, to net.Conn) {
	pieces := make(chan chunk, 4096)
	p.wg.Go(func() {
		defer close(pieces)
		for {
			b := make([]byte, 32<<10)
			n, err := from.Read(b)
			if n > 0 {
				select {
				case pieces <- chunk{b[:n], time.Now()}:
				case <-p.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range pieces {
		for {
			d := time.Duration(p.delay.Load())
			if d >= 0 && time.Since(c.at) >= d {
				break
			}
			select {
			case <-p.done:
				return
			case <-time.After(time.Millisecond):
			}
		}
		if _, err := to.Write(c.b); err != nil {
			return
		}
	}
}

// replicatedSet is a primary and a replica linked through a linkProxy,
// with no Sentinel: the tests promote the replica themselves, as a
// Sentinel would once the primary is gone.
type replicatedSet struct {
	primary, replica *redisProc
	link             *linkProxy
}

// startReplicated starts a primary and a replica syncing through a
// linkProxy, and waits until the replica is online.
func startReplicated(t *testing.T) *replicatedSet {
	t.Helper()
	s := &replicatedSet{primary: startRedis(t, sentinelDataArgs...)}
	s.link = newLinkProxy(t, s.primary.Addr())
	s.replica = startRedis(t, append([]string{"--replicaof", "127.0.0.1", s.link.port()}, sentinelDataArgs...)...)
	waitLinked(t, s.primary.Addr(), s.replica.Addr())
	return s
}

// failover kills the primary with what the link holds back, and promotes
// the replica (REPLICAOF NO ONE). It returns a client of the new primary,
// closed when the test ends.
func (s *replicatedSet) failover(t *testing.T) *redis.Client {
	t.Helper()
	s.link.cut()
	s.primary.Kill()
	rdb := redis.NewClient(&redis.Options{Addr: s.replica.Addr()})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Do(bg, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatalf("promoting the replica: %v", err)
	}
	return rdb
}

// waitKey waits until rdb holds want at key ("" for no key).
func waitKey(t *testing.T, rdb *redis.Client, key, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		got, err := rdb.Get(bg, key).Result()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, %v after 10 s; want %q", key, got, err, want)
		}
	}
}

// session returns the session part of a token.
func session(token string) string { return token[strings.LastIndexByte(token, '|')+1:] }

// TestRevocationSurvivesFailover checks that a RevokeToken, or the end of
// the old token in a RefreshToken, that returned is on the replica when
// the primary dies at once: the replica promoted in its place does not
// bring the token back. The replication link is made slow (50 ms), so
// that a call that did not wait for the replica would return long before
// it has the change, which the primary's death then loses.
func TestRevocationSurvivesFailover(t *testing.T) {
	const linkDelay = 50 * time.Millisecond
	ops := []struct {
		name string
		// do ends token and returns what the user's key must hold
		// afterwards ("" for nothing).
		do func(e *env, userID, token string) (string, error)
	}{
		{"RevokeToken", func(e *env, _, token string) (string, error) {
			return "", e.c.RevokeToken(bg, token)
		}},
		{"RefreshToken", func(e *env, userID, _ string) (string, error) {
			res, err := e.c.RefreshToken(bg, userID)
			if err != nil {
				return "", err
			}
			return session(res.Response), nil
		}},
	}
	for _, op := range ops {
		for _, kind := range redisKinds() {
			t.Run(op.name+"/"+kind.name, func(t *testing.T) {
				s := startReplicated(t)
				e := newProcEnv(t, kind, s.primary.Addr())
				replica := redis.NewClient(&redis.Options{Addr: s.replica.Addr()})
				t.Cleanup(func() { replica.Close() })

				u := e.user("survivor")
				tok := e.login(t, u)
				waitKey(t, replica, e.key(u.OpenID), session(tok))

				s.link.setDelay(linkDelay)
				begin := time.Now()
				want, err := op.do(e, u.OpenID, tok)
				took := time.Since(begin)
				if err != nil {
					t.Fatalf("%s with a replica %v behind: %v", op.name, linkDelay, err)
				}
				promoted := s.failover(t)
				got, err := promoted.Get(bg, e.key(u.OpenID)).Result()
				if errors.Is(err, redis.Nil) {
					err = nil
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("%s returned after %v, but the replica promoted then holds session %q, want %q: the old token is back", op.name, took, got, want)
				}
				// A Client on the promoted replica says the same.
				other := newProcEnv(t, redisKinds()[1], s.replica.Addr())
				other.cfg.Sku = e.cfg.Sku
				other.open(t)
				if ok, err := other.c.IsTokenValid(bg, tok); err != nil || ok {
					t.Fatalf("after the failover IsTokenValid(ended token) = %v, %v", ok, err)
				}
				t.Logf("%s returned after %v with the replica %v behind", op.name, took, linkDelay)
			})
		}
	}
}

// TestRevocationReplicaSlow checks RevokeToken and RefreshToken when the
// replica does not acknowledge: each fails with 6000 after the bound
// (mpauthx.ReplicaAckTimeout), or when its ctx ends if that comes first;
// the change is made on the primary all the same.
func TestRevocationReplicaSlow(t *testing.T) {
	s := startReplicated(t)
	e := newProcEnv(t, redisKinds()[1], s.primary.Addr())
	u := e.user("slow")
	tok := e.login(t, u)
	s.link.setDelay(-1) // the replica hears nothing more

	begin := time.Now()
	err := e.c.RevokeToken(bg, tok)
	revokeTook := time.Since(begin)
	if mpauthx.Code(err) != mpauthx.StatusDatabaseError || !errors.Is(err, mpauthx.ErrNotReplicated) {
		t.Fatalf("RevokeToken with a replica that does not answer = %v; want a 6000 wrapping ErrNotReplicated", err)
	}
	if revokeTook < mpauthx.ReplicaAckTimeout || revokeTook > mpauthx.ReplicaAckTimeout+5*time.Second {
		t.Errorf("RevokeToken failed after %v; want about %v", revokeTook, mpauthx.ReplicaAckTimeout)
	}
	if e.valid(t, tok) {
		t.Error("the token RevokeToken failed to replicate is still valid on the primary")
	}

	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	begin = time.Now()
	_, err = e.c.RefreshToken(ctx, u.OpenID)
	took := time.Since(begin)
	if mpauthx.Code(err) != mpauthx.StatusDatabaseError || took > 2*time.Second {
		t.Fatalf("RefreshToken with a 200 ms ctx and a replica that does not answer = %v after %v; want a 6000 within the ctx", err, took)
	}
	t.Logf("RevokeToken failed after %v, RefreshToken with a 200 ms ctx after %v", revokeTook, took)

	// Once the replica hears again, revocations return at once.
	s.link.setDelay(0)
	tok = e.login(t, u)
	begin = time.Now()
	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatalf("RevokeToken once the replica answers again: %v", err)
	}
	t.Logf("RevokeToken once the replica answers again: %v", time.Since(begin))
}

// TestRevocationWithoutReplica checks that on a Redis without replicas
// RevokeToken and RefreshToken do not wait: no WAIT is sent.
func TestRevocationWithoutReplica(t *testing.T) {
	p := startRedis(t)
	e := newProcEnv(t, redisKinds()[1], p.Addr())
	u := e.user("alone")
	tok := e.login(t, u)
	res, err := e.c.RefreshToken(bg, u.OpenID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.RevokeToken(bg, res.Response); err != nil {
		t.Fatal(err)
	}
	if e.valid(t, tok) || e.valid(t, res.Response) {
		t.Fatal("a refreshed or revoked token is valid")
	}
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer rdb.Close()
	stats, err := rdb.Info(bg, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stats, "cmdstat_wait:") {
		t.Errorf("WAIT was sent to a Redis without replicas:\n%s", stats)
	}
}

// BenchmarkRevokeReplicated measures what waiting for a replica costs
// RevokeToken (RefreshToken waits the same way): on the Redis at MPAUTHX_REDIS_ADDR
// (without replicas: ROLE is sent, no WAIT) and on the primary of the
// Sentinel set at MPAUTHX_SENTINEL (one replica on the same machine:
// ROLE, then WAIT for its acknowledgement), one call at a time.
func BenchmarkRevokeReplicated(b *testing.B) {
	addr, sentinel := os.Getenv(envRedisAddr), os.Getenv(envSentinel)
	if addr == "" || sentinel == "" {
		b.Skipf("needs %s and %s", envRedisAddr, envSentinel)
	}
	master, sentinels, err := parseSentinel(sentinel)
	if err != nil {
		b.Fatal(err)
	}
	targets := []struct {
		name string
		rdb  redis.UniversalClient
	}{
		{"no-replica", redis.NewClient(&redis.Options{Addr: addr})},
		{"one-replica", redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: sentinels})},
	}
	for _, tg := range targets {
		b.Cleanup(func() { tg.rdb.Close() })
		e := newWorld(b)
		e.rdb, e.cfg.Redis = tg.rdb, tg.rdb
		e.open(b)
		id := "orevoke-" + e.cfg.Sku
		b.Cleanup(func() { tg.rdb.Del(bg, e.key(id), "mpauthx:{"+id+"|"+e.cfg.Sku+"}:sk") })
		if _, err := mpauthx.Issue(bg, e.c, id, id, "sk"); err != nil {
			b.Fatal(err)
		}
		b.Run(tg.name+"/RevokeToken", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				res, err := mpauthx.Issue(bg, e.c, id, id, "sk")
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := e.c.RevokeToken(bg, res.Response); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRevocationRetryWaits: a RevokeToken retried after it failed with
// ErrNotReplicated (as docs/operations.md advises) finds the token gone
// on the primary, but still returns nil only once a replica holds the
// revocation: it used to return nil at once, the replica still without
// it. The same for a second logout of a token another call is revoking.
func TestRevocationRetryWaits(t *testing.T) {
	s := startReplicated(t)
	e := newProcEnv(t, redisKinds()[1], s.primary.Addr())
	u := e.user("retry")
	tok := e.login(t, u)
	s.link.setDelay(-1) // the replica hears nothing more

	if err := e.c.RevokeToken(bg, tok); !errors.Is(err, mpauthx.ErrNotReplicated) {
		t.Fatalf("RevokeToken with a replica that does not answer = %v; want ErrNotReplicated", err)
	}
	begin := time.Now()
	err := e.c.RevokeToken(bg, tok)
	if mpauthx.Code(err) != mpauthx.StatusDatabaseError || !errors.Is(err, mpauthx.ErrNotReplicated) {
		t.Fatalf("RevokeToken retried while the replica still does not answer = %v after %v; want a 6000 wrapping ErrNotReplicated", err, time.Since(begin))
	}

	// Once the replica hears again, the retry succeeds, and the replica
	// holds the revocation when it does.
	s.link.setDelay(0)
	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatalf("RevokeToken retried once the replica answers: %v", err)
	}
	replica := redis.NewClient(&redis.Options{Addr: s.replica.Addr()})
	t.Cleanup(func() { replica.Close() })
	if n, err := replica.Exists(bg, e.key(u.OpenID)).Result(); err != nil || n != 0 {
		t.Errorf("the replica holds the revoked session: %d, %v", n, err)
	}

	// A token never issued (nothing to revoke, nothing to wait for but
	// what came before) still returns at once on a healthy replica.
	begin = time.Now()
	if err := e.c.RevokeToken(bg, e.login(t, e.user("other"))+"x"); err != nil {
		t.Fatalf("RevokeToken of an unknown session: %v", err)
	}
	if took := time.Since(begin); took > mpauthx.ReplicaAckTimeout/2 {
		t.Errorf("RevokeToken of an unknown session took %v", took)
	}
}
