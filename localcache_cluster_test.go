//go:build unix

package mpauthx_test

import (
	"fmt"
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

// The local cache on a Redis Cluster while its topology changes: a
// failover (manual, the old master up; or the master killed), and a slot
// migrated to a node that joins meanwhile. Each test starts a Cluster of
// its own (never the shared one of MPAUTHX_REDIS_CLUSTER, which the other
// tests use), from redis-server in PATH.

// envCacheClusterPort names the first port the tests' own Clusters may
// use (default 21100); a node also listens on port+10000 (its bus).
const envCacheClusterPort = "MPAUTHX_CACHE_CLUSTER_PORT"

// cacheCluster is a Redis Cluster of a test's own.
type cacheCluster struct {
	t     *testing.T
	nodes []*redisProc
	ids   []string
	admin []*redis.Client // a plain client per node
}

// clusterPorts is the next port to try for a test Cluster's node.
var clusterPorts struct {
	sync.Mutex
	next int
}

// clusterPort returns a port that is free, and whose bus port is free too.
func clusterPort(t *testing.T) int {
	t.Helper()
	clusterPorts.Lock()
	defer clusterPorts.Unlock()
	if clusterPorts.next == 0 {
		clusterPorts.next = 21100
		if v, err := strconv.Atoi(os.Getenv(envCacheClusterPort)); err == nil {
			clusterPorts.next = v
		}
	}
	for ; clusterPorts.next < 30000; clusterPorts.next++ {
		p := clusterPorts.next
		if portFree(p) && portFree(p+10000) {
			clusterPorts.next++
			return p
		}
	}
	t.Fatal("no free port for a Cluster node below 30000")
	return 0
}

// portFree reports whether nothing listens on the loopback port p.
func portFree(p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// startCacheCluster starts masters nodes sharing the slots evenly, a
// replica of the first master when replica, and spare nodes that are not
// part of the Cluster yet, and waits until the Cluster is ok. The nodes
// are, in order: the masters, the replica, the spares.
func startCacheCluster(t *testing.T, masters int, replica bool, spares int) *cacheCluster {
	t.Helper()
	c := &cacheCluster{t: t}
	n := masters + spares
	if replica {
		n++
	}
	for range n {
		p := startRedisPort(t, clusterPort(t), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--appendonly", "no")
		c.nodes = append(c.nodes, p)
		rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
		t.Cleanup(func() { rdb.Close() })
		c.admin = append(c.admin, rdb)
		id, err := rdb.Do(bg, "cluster", "myid").Text()
		if err != nil {
			t.Fatal(err)
		}
		c.ids = append(c.ids, id)
	}
	for i := range masters {
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		if err := c.admin[i].Do(bg, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
			t.Fatal(err)
		}
	}
	members := masters
	if replica {
		members++
	}
	for i := 1; i < members; i++ {
		c.meet(i)
	}
	if replica {
		pollUntil(t, "replicating", func() bool {
			return c.admin[masters].Do(bg, "cluster", "replicate", c.ids[0]).Err() == nil
		})
		pollUntil(t, "replica synced", func() bool {
			info, _ := c.admin[masters].Info(bg, "replication").Result()
			return strings.Contains(info, "master_link_status:up")
		})
	}
	c.waitOK(members)
	return c
}

// meet has node i join the Cluster.
func (c *cacheCluster) meet(i int) {
	c.t.Helper()
	if err := c.admin[i].ClusterMeet(bg, "127.0.0.1", strconv.Itoa(c.nodes[0].port)).Err(); err != nil {
		c.t.Fatal(err)
	}
}

// waitOK waits until the first members nodes that are up say the
// Cluster is ok and each knows every other.
func (c *cacheCluster) waitOK(members int) {
	c.t.Helper()
	pollUntil(c.t, "a Cluster that is ok", func() bool {
		for i := range members {
			if c.nodes[i].cmd == nil {
				continue // killed
			}
			info, err := c.admin[i].ClusterInfo(bg).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(members)+"\r\n") {
				return false
			}
		}
		return true
	})
}

// addrs returns the addresses of the first n nodes.
func (c *cacheCluster) addrs(n int) []string {
	var a []string
	for _, p := range c.nodes[:n] {
		a = append(a, p.Addr())
	}
	return a
}

// slotOf returns the hash slot of key.
func (c *cacheCluster) slotOf(key string) int {
	c.t.Helper()
	s, err := c.admin[0].ClusterKeySlot(bg, key).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	return int(s)
}

// migrate moves slot from node src to node dst, keys and all, as
// redis-cli --cluster reshard does.
func (c *cacheCluster) migrate(slot, src, dst int) {
	c.t.Helper()
	must := func(err error) {
		c.t.Helper()
		if err != nil {
			c.t.Fatal(err)
		}
	}
	must(c.admin[dst].Do(bg, "cluster", "setslot", slot, "importing", c.ids[src]).Err())
	must(c.admin[src].Do(bg, "cluster", "setslot", slot, "migrating", c.ids[dst]).Err())
	for {
		keys, err := c.admin[src].ClusterGetKeysInSlot(bg, slot, 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"migrate", "127.0.0.1", c.nodes[dst].port, "", 0, 5000, "keys"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(c.admin[src].Do(bg, args...).Err())
	}
	for _, i := range []int{dst, src} {
		must(c.admin[i].Do(bg, "cluster", "setslot", slot, "node", c.ids[dst]).Err())
	}
}

// clusterCacheEnv returns an env whose Client A (e.c) and second instance
// B both have a local cache, each on a ClusterClient of its own seeded
// with addrs; ccs are those clients.
func clusterCacheEnv(t *testing.T, addrs []string) (e *env, b *mpauthx.Client, ccs []*redis.ClusterClient) {
	t.Helper()
	newCC := func() *redis.ClusterClient {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true, MaxRetries: 2})
		t.Cleanup(func() { cc.Close() })
		ccs = append(ccs, cc)
		return cc
	}
	e = newWorld(t)
	e.cfg.LocalCache = cacheSize
	ca := newCC()
	e.rdb, e.cfg.Redis = ca, ca
	e.open(t)
	b = e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = newCC() })
	return e, b, ccs
}

// userOn logs in users until one's session key is in a slot that owns
// accepts, and returns the user's ID, the token and the slot.
func userOn(t *testing.T, e *env, c *cacheCluster, owns func(slot int) bool) (userID, token string, slot int) {
	t.Helper()
	for i := range 1000 {
		u := e.user(fmt.Sprint("slot", i))
		if s := c.slotOf(e.key(u.OpenID)); owns(s) {
			return u.OpenID, e.login(t, u), s
		}
	}
	t.Fatal("no user's key in the slots wanted")
	return "", "", 0
}

// checking checks tokens on c on a goroutine of its own until the test
// ends: checks during a topology change may fail, but a live token must
// never be invalid.
func checking(t *testing.T, c *mpauthx.Client, tokens []string) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			ok, err := c.IsTokenValid(bg, tokens[i%len(tokens)])
			if err == nil && !ok {
				t.Errorf("a live token is not valid during the change")
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
}

func TestLocalCacheClusterFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(t *testing.T, c *cacheCluster)
	}{
		{"manual failover, the old master up", func(t *testing.T, c *cacheCluster) {
			if err := c.admin[3].Do(bg, "cluster", "failover").Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"master killed", func(t *testing.T, c *cacheCluster) { c.nodes[0].Kill() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCacheCluster(t, 3, true, 0)
			e, b, ccs := clusterCacheEnv(t, c.addrs(4))
			userID, tok, _ := userOn(t, e, c, func(s int) bool { return s < 16384/3 }) // on master 0
			// A token on another master, checked during the change: Redis
			// replicates asynchronously, so a token of the master killed
			// could be lost with it.
			_, other, _ := userOn(t, e, c, func(s int) bool { return s >= 16384/3 })
			holdOn(t, b, tok)
			holdOn(t, b, other)
			checking(t, b, []string{other})
			tc.fail(t, c)
			pollUntil(t, "the replica promoted", func() bool {
				role, err := c.admin[3].Do(bg, "role").Slice()
				return err == nil && len(role) > 0 && role[0] == "master"
			})
			c.waitOK(4)
			// go-redis goes on sending to the dead master until it
			// reloads the Cluster's slots, which it does not do by itself
			// on refused connections.
			for _, cc := range ccs {
				cc.ReloadState(bg)
			}
			pollUntil(t, "revoked", func() bool { return e.c.RevokeToken(bg, tok) == nil })
			neverStale(t, b, tok, time.Now())
			refusedOn(t, b, tok)
			// B's cache answers again, and hears of the new master's writes.
			res, err := e.c.RefreshToken(bg, userID)
			if err != nil {
				t.Fatal(err)
			}
			revokedOn(t, e, b, res.Response)
		})
	}
}

func TestLocalCacheClusterSlotMigrated(t *testing.T) {
	// The slot of a token B's cache holds moves to a node that joins the
	// Cluster meanwhile, which B has no link to; then the token is
	// revoked there.
	c := startCacheCluster(t, 3, false, 1)
	e, b, _ := clusterCacheEnv(t, c.addrs(3))
	userID, tok, slot := userOn(t, e, c, func(s int) bool { return s < 16384/3 }) // on master 0
	other := e.login(t, e.user("other"))
	holdOn(t, b, tok)
	holdOn(t, b, other)
	checking(t, b, []string{other})
	c.meet(3)
	c.waitOK(4)
	c.migrate(slot, 0, 3)
	pollUntil(t, "revoked", func() bool { return e.c.RevokeToken(bg, tok) == nil })
	if n, err := c.admin[3].Exists(bg, e.key(userID)).Result(); err != nil || n != 0 {
		t.Fatalf("the key on the new node: %d, %v", n, err)
	}
	neverStale(t, b, tok, time.Now())
	refusedOn(t, b, tok)
	// B's cache answers again, and hears of the new node's writes.
	res, err := e.c.RefreshToken(bg, userID)
	if err != nil {
		t.Fatal(err)
	}
	revokedOn(t, e, b, res.Response)
}

// revokedOn waits until B's cache holds token, revokes it on e.c, and
// checks the bound on B.
func revokedOn(t *testing.T, e *env, b *mpauthx.Client, token string) {
	t.Helper()
	holdOn(t, b, token)
	if err := e.c.RevokeToken(bg, token); err != nil {
		t.Fatal(err)
	}
	neverStale(t, b, token, time.Now())
	refusedOn(t, b, token)
}
