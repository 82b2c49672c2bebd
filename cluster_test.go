package mpauthx_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// clusterEnv returns an env on the Redis Cluster of MPAUTHX_REDIS_CLUSTER,
// and its client, or skips the test when the variable is unset.
func clusterEnv(t *testing.T) (*env, *redis.ClusterClient) {
	t.Helper()
	if os.Getenv(envRedisCluster) == "" {
		t.Skipf("%s is not set: it holds the comma-separated seed addresses of a Redis Cluster (.ci/services/20-redis-cluster.sh starts one)", envRedisCluster)
	}
	for _, b := range backends() {
		if b.name == "cluster" {
			e := newEnv(t, b, nil)
			cc, ok := e.rdb.(*redis.ClusterClient)
			if !ok {
				t.Fatalf("the cluster backend gave a %T, want *redis.ClusterClient", e.rdb)
			}
			return e, cc
		}
	}
	t.Fatalf("%s is set but backends() has no cluster backend", envRedisCluster)
	return nil, nil
}

// noCrossSlot fails the test when err is a Redis Cluster CROSSSLOT error,
// and on any other error too.
func noCrossSlot(t *testing.T, call string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("%s: CROSSSLOT on Redis Cluster (keys of one call must share a hash tag): %v", call, err)
	}
	t.Fatalf("%s: %v", call, err)
}

// TestClusterSpreadsUsers checks that the keys of different users land on
// different slots and on every master, while all the keys of one user
// share one slot, which is what lets each call stay on one node.
func TestClusterSpreadsUsers(t *testing.T) {
	e, cc := clusterEnv(t)
	ctx := context.Background()

	const n = 64
	users := make([]string, n)
	for i := range users {
		u := e.user(fmt.Sprintf("spread%02d", i))
		users[i] = u.OpenID
		e.login(t, u)
	}

	// Find every key of this env's Sku on each master, where it really is.
	type place struct {
		slot int64
		node string
	}
	var mu sync.Mutex
	places := map[string][]place{} // userID -> where its keys are
	masters := map[string]bool{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		addr := node.Options().Addr
		mu.Lock()
		masters[addr] = true
		mu.Unlock()
		iter := node.Scan(ctx, 0, "*"+e.cfg.Sku+"*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			slot, err := node.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				return err
			}
			owner := ""
			for _, id := range users {
				if strings.Contains(key, id) {
					owner = id
				}
			}
			if owner == "" {
				return fmt.Errorf("key %q of Sku %s names none of the users", key, e.cfg.Sku)
			}
			mu.Lock()
			places[owner] = append(places[owner], place{slot, addr})
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) < 2 {
		t.Fatalf("the cluster has %d master(s); this test needs several", len(masters))
	}

	slots := map[int64]bool{}
	nodes := map[string]int{}
	for _, id := range users {
		ps := places[id]
		if len(ps) == 0 {
			t.Errorf("user %s has no key on any master", id)
			continue
		}
		for _, p := range ps[1:] {
			if p.slot != ps[0].slot {
				t.Errorf("the keys of user %s are on slots %d and %d: one call would be CROSSSLOT", id, ps[0].slot, p.slot)
			}
		}
		slots[ps[0].slot] = true
		nodes[ps[0].node]++
	}
	// 64 users on 16384 slots: a few may share a slot, most must not.
	if len(slots) < n*3/4 {
		t.Errorf("%d users' keys use only %d slots: the hash tag does not depend on the user", n, len(slots))
	}
	for addr := range masters {
		if nodes[addr] == 0 {
			t.Errorf("master %s holds none of %d users (spread: %v)", addr, n, nodes)
		}
	}
	t.Logf("%d users on %d slots; keys per master: %v", n, len(slots), nodes)
}

// TestClusterEveryCall runs each Client call on Redis Cluster for users
// spread over the nodes, checking results and that no call is CROSSSLOT.
func TestClusterEveryCall(t *testing.T) {
	e, _ := clusterEnv(t)
	ctx := context.Background()

	for i := range 12 {
		t.Run(fmt.Sprintf("user%02d", i), func(t *testing.T) {
			u := e.user(fmt.Sprintf("every%02d", i))
			data, iv := e.wx.UserInfo(u.OpenID)

			res, err := e.c.Authorize(ctx, e.wx.Code(u.OpenID), data, iv)
			noCrossSlot(t, "Authorize", err)
			token := res.Response
			if e.c.ExtractOpenID(token) != u.OpenID {
				t.Fatalf("Authorize gave token of %q, want %q", e.c.ExtractOpenID(token), u.OpenID)
			}

			ok, err := e.c.IsTokenValid(ctx, token)
			noCrossSlot(t, "IsTokenValid", err)
			if !ok {
				t.Fatal("IsTokenValid(new token) = false")
			}

			res, err = e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
			noCrossSlot(t, "AuthorizeCode", err)
			if res.Response != token {
				t.Fatal("AuthorizeCode of a user with a live token gave another token")
			}

			res, err = e.c.RefreshToken(ctx, u.OpenID)
			noCrossSlot(t, "RefreshToken", err)
			newToken := res.Response
			if newToken == token || e.c.ExtractOpenID(newToken) != u.OpenID {
				t.Fatalf("RefreshToken gave %q, want a new token of the user", e.c.ExtractOpenID(newToken))
			}
			for _, c := range []struct {
				token string
				want  bool
			}{{token, false}, {newToken, true}} {
				ok, err := e.c.IsTokenValid(ctx, c.token)
				noCrossSlot(t, "IsTokenValid after RefreshToken", err)
				if ok != c.want {
					t.Errorf("after RefreshToken IsTokenValid = %t, want %t", ok, c.want)
				}
			}

			noCrossSlot(t, "RevokeToken", e.c.RevokeToken(ctx, newToken))
			ok, err = e.c.IsTokenValid(ctx, newToken)
			noCrossSlot(t, "IsTokenValid after RevokeToken", err)
			if ok {
				t.Error("IsTokenValid(revoked token) = true")
			}
			noCrossSlot(t, "RevokeToken of a revoked token", e.c.RevokeToken(ctx, newToken))
		})
	}
}

// TestClusterConcurrentLogins logs one user in from many goroutines at
// once, and many users at once, on Redis Cluster: one user ends with one
// token that every caller got, and concurrent IsTokenValid calls, which
// go-redis pipelines across nodes, all answer.
func TestClusterConcurrentLogins(t *testing.T) {
	e, _ := clusterEnv(t)
	ctx := context.Background()
	const workers = 32

	t.Run("one user", func(t *testing.T) {
		u := e.user("crowd")
		codes := make([]string, workers)
		for i := range codes {
			codes[i] = e.wx.Code(u.OpenID)
		}
		tokens := make([]string, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				var res mpauthx.Result
				if i%2 == 0 {
					res, errs[i] = e.c.AuthorizeCode(ctx, codes[i])
				} else {
					data, iv := e.wx.UserInfo(u.OpenID)
					res, errs[i] = e.c.Authorize(ctx, codes[i], data, iv)
				}
				tokens[i] = res.Response
			})
		}
		wg.Wait()
		for i, err := range errs {
			noCrossSlot(t, fmt.Sprintf("login %d", i), err)
			if tokens[i] != tokens[0] {
				t.Fatalf("concurrent logins of one user got different tokens (%d and 0)", i)
			}
		}
		if !e.valid(t, tokens[0]) {
			t.Fatal("the shared token is not valid")
		}
	})

	t.Run("many users", func(t *testing.T) {
		users := make([]mpauthxtest.User, workers)
		for i := range users {
			users[i] = e.user(fmt.Sprintf("many%02d", i))
		}
		tokens := make([]string, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() {
				var res mpauthx.Result
				res, errs[i] = e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
				tokens[i] = res.Response
			})
		}
		wg.Wait()
		for i, err := range errs {
			noCrossSlot(t, fmt.Sprintf("login of user %d", i), err)
		}
		valid := make([]bool, workers)
		for i, tok := range tokens {
			wg.Go(func() { valid[i], errs[i] = e.c.IsTokenValid(ctx, tok) })
		}
		wg.Wait()
		for i := range tokens {
			noCrossSlot(t, fmt.Sprintf("IsTokenValid of user %d", i), errs[i])
			if !valid[i] {
				t.Errorf("user %d's token is not valid", i)
			}
		}
	})
}
