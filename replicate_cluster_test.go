package mpauthx_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startClusterNode starts a Redis Cluster node with a bus port of its
// own, and returns it with a client of it.
func startClusterNode(t *testing.T) (*redisProc, *redis.Client, int) {
	t.Helper()
	bus := freePort(t)
	p := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000")
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return p, rdb, bus
}

// mixedCluster is a Cluster of two masters, a (slots 0-8191) and b
// (8192-16383), and r, a replica of a, each with a client of its own.
type mixedCluster struct {
	a, b, r    *redisProc
	ra, rb, rr *redis.Client
}

// startMixedCluster starts a mixedCluster and waits until every node
// sees the cluster whole and r is in sync with a.
func startMixedCluster(t *testing.T) *mixedCluster {
	t.Helper()
	a, ra, _ := startClusterNode(t)
	b, rb, bBus := startClusterNode(t)
	r, rr, rBus := startClusterNode(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ra.Do(bg, "cluster", "addslotsrange", 0, 8191).Err())
	must(rb.Do(bg, "cluster", "addslotsrange", 8192, 16383).Err())
	must(ra.Do(bg, "cluster", "meet", "127.0.0.1", b.port, bBus).Err())
	must(ra.Do(bg, "cluster", "meet", "127.0.0.1", r.port, rBus).Err())
	aID, err := ra.ClusterMyID(bg).Result()
	must(err)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nodes, _ := rr.ClusterNodes(bg).Result()
		if strings.Contains(nodes, aID) && rr.ClusterReplicate(bg, aID).Err() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never learnt of master %s:\n%s", aID, nodes)
		}
	}
	waitLinked(t, a.Addr(), r.Addr())
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok := true
		for _, c := range []*redis.Client{ra, rb, rr} {
			info, _ := c.ClusterInfo(bg).Result()
			ok = ok && strings.Contains(info, "cluster_state:ok")
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster never reached cluster_state:ok")
		}
	}

	return &mixedCluster{a, b, r, ra, rb, rr}
}

// TestRevocationClusterMixedReplicas: on a Cluster where one master has a
// replica and another has none, a revocation on the master without one
// returns at once: that another master has a replica says nothing of
// this one (it used to wait the full second and fail with
// ErrNotReplicated, for ever, since the other master's replica kept
// being seen). The master with a replica is still waited for.
func TestRevocationClusterMixedReplicas(t *testing.T) {
	m := startMixedCluster(t)
	a, b, rb := m.a, m.b, m.rb
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e := newProcWorld(t, a.Addr())
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{a.Addr(), b.Addr()}})
	t.Cleanup(func() { cc.Close() })
	e.rdb, e.cfg.Redis = cc, cc
	e.open(t)

	// One token on each master.
	tokens := map[string]string{}
	for i := 0; len(tokens) < 2; i++ {
		if i > 200 {
			t.Fatalf("no user on each master: %v", tokens)
		}
		u := e.user("mixed-" + strconv.Itoa(i))
		node, err := cc.MasterForKey(bg, e.key(u.OpenID))
		must(err)
		if _, ok := tokens[node.Options().Addr]; !ok {
			tokens[node.Options().Addr] = e.login(t, u)
		}
	}
	// The master with a replica first: the Client sees a replica.
	for _, addr := range []string{a.Addr(), b.Addr()} {
		begin := time.Now()
		err := e.c.RevokeToken(bg, tokens[addr])
		took := time.Since(begin)
		if err != nil {
			t.Errorf("RevokeToken on the master %s (with a replica: %v) = %v after %v", addr, addr == a.Addr(), err, took)
		}
		if e.valid(t, tokens[addr]) {
			t.Errorf("the token revoked on %s is valid", addr)
		}
	}
	stats, err := rb.Info(bg, "commandstats").Result()
	must(err)
	if strings.Contains(stats, "cmdstat_wait:") {
		t.Errorf("WAIT was sent to the master without replicas")
	}
}

// TestRevocationClusterAfterFailover: right after a Cluster failover,
// while the Client's ClusterClient still maps the slot to the old master
// (now a replica, which answers MOVED), a revocation waits for a replica
// of the new master all the same. It used to run through the
// ClusterClient without waiting: nil returned, the new master's replica
// (the old master) not yet holding the revocation.
func TestRevocationClusterAfterFailover(t *testing.T) {
	m := startMixedCluster(t)
	e := newProcWorld(t, m.a.Addr())
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{m.a.Addr(), m.b.Addr()}})
	t.Cleanup(func() { cc.Close() })
	e.rdb, e.cfg.Redis = cc, cc
	e.open(t)

	var tok string
	for i := 0; tok == ""; i++ {
		if i > 200 {
			t.Fatal("no user on master a")
		}
		u := e.user("failover-" + strconv.Itoa(i))
		node, err := cc.MasterForKey(bg, e.key(u.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == m.a.Addr() {
			tok = e.login(t, u)
		}
	}
	// r takes over from a, which becomes r's replica (CLUSTER FAILOVER
	// waits for r to catch up with a first).
	if err := m.rr.ClusterFailover(bg).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := onlineReplicas(bg, m.r.Addr())
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r did not become a master with a replica: %v, %v", n, err)
		}
	}
	if err := m.rr.ConfigResetStat(bg).Err(); err != nil {
		t.Fatal(err)
	}

	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatalf("RevokeToken after the failover: %v", err)
	}
	errs, _ := m.ra.Info(bg, "errorstats").Result()
	if !strings.Contains(errs, "errorstat_MOVED") {
		t.Fatalf("the revocation did not meet the old master's MOVED (the ClusterClient had already reloaded): the test exercised nothing\n%s", errs)
	}
	stats, err := m.rr.Info(bg, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_wait:") {
		t.Errorf("RevokeToken returned without a WAIT on the new master, which has a replica")
	}
	if e.valid(t, tok) {
		t.Error("the revoked token is valid")
	}
}
