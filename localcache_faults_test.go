//go:build unix

package mpauthx_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// The local cache when its link to Redis breaks, on a redis-server of the
// test's own (redisproc_test.go): the cache must stop answering (and
// empty itself when the connection is lost), answer nothing stale, and
// come back once the link does.

// cacheProcEnv starts a redis-server and returns its env with a Client A
// (e.c, Redis dialled by New) and a second instance B, both with a local
// cache, and an admin client for the server.
func cacheProcEnv(t *testing.T) (p *redisProc, e *env, b *mpauthx.Client, admin *redis.Client) {
	t.Helper()
	p = startRedis(t)
	e = newProcWorld(t, p.Addr())
	e.cfg.LocalCache = cacheSize
	openKind(t, e, redisKinds()[0])
	b = e.client(t, func(*mpauthx.Config) {})
	admin = redis.NewClient(&redis.Options{Addr: p.Addr()})
	t.Cleanup(func() { admin.Close() })
	return p, e, b, admin
}

// holdOn checks token on c until c's cache answers it. Checks may fail
// while Redis or the link recover; the token must never be invalid.
func holdOn(t *testing.T, c *mpauthx.Client, token string) {
	t.Helper()
	pollUntil(t, "held by the local cache", func() bool {
		ok, err := c.IsTokenValid(bg, token)
		if err == nil && !ok {
			t.Fatal("a live token is not valid")
		}
		return mpauthx.CacheHolds(c, token)
	})
}

// refusedOn polls c until it says false for token; a check that fails
// (Redis recovering) is not an answer.
func refusedOn(t *testing.T, c *mpauthx.Client, token string) {
	t.Helper()
	pollUntil(t, "refused", func() bool {
		ok, err := c.IsTokenValid(bg, token)
		return err == nil && !ok
	})
}

// revokeSeen logs u in on e.c, waits until b's cache holds the token,
// revokes it on e.c and waits until b refuses it.
func revokeSeen(t *testing.T, e *env, b *mpauthx.Client, u mpauthxtest.User) {
	t.Helper()
	tok := e.login(t, u)
	holdOn(t, b, tok)
	if err := e.c.RevokeToken(bg, tok); err != nil {
		t.Fatal(err)
	}
	refusedOn(t, b, tok)
}

// killLinks closes the local caches' links with CLIENT KILL ID and
// returns how many it closed.
func killLinks(t *testing.T, admin *redis.Client) int {
	t.Helper()
	list, err := admin.ClientList(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " name=mpauthx-localcache ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		if err := admin.Do(bg, "client", "kill", "id", id).Err(); err == nil {
			n++
		}
	}
	return n
}

func TestLocalCacheLinkFaults(t *testing.T) {
	// The links break while a token they held is revoked: B must refuse
	// it (the invalidation may be lost), and once the links are back, hear
	// of the next revocation over them.
	for _, tc := range []struct {
		name      string
		breakLink func(t *testing.T, admin *redis.Client)
	}{
		{"links killed by ID", func(t *testing.T, admin *redis.Client) {
			if n := killLinks(t, admin); n == 0 {
				t.Error("no link to kill")
			}
		}},
		{"CLIENT KILL TYPE pubsub and normal", func(t *testing.T, admin *redis.Client) {
			for _, typ := range []string{"pubsub", "normal"} {
				if err := admin.Do(bg, "client", "kill", "type", typ).Err(); err != nil {
					t.Error(err)
				}
			}
		}},
	} {
		t.Run(tc.name+" while a token is revoked", func(t *testing.T) {
			_, e, b, admin := cacheProcEnv(t)
			u := e.user("eve")
			tok := e.login(t, u)
			holdOn(t, b, tok)
			pollUntil(t, "two links up", func() bool { return strings.Count(admin.ClientList(bg).Val(), "name=mpauthx-localcache") == 2 })
			var wg sync.WaitGroup
			wg.Go(func() { tc.breakLink(t, admin) })
			// A killed connection fails the revoke that was on it.
			pollUntil(t, "revoked", func() bool { return e.c.RevokeToken(bg, tok) == nil })
			wg.Wait()
			refusedOn(t, b, tok)
			revokeSeen(t, e, b, u)
		})
	}
	t.Run("Redis restarted empty", func(t *testing.T) {
		p, e, b, _ := cacheProcEnv(t)
		u := e.user("gus")
		tok := e.login(t, u)
		holdOn(t, b, tok)
		ups := mpauthx.CacheLinkUps(b)
		p.Kill()
		p.Start() // without its data: --save "" and no append-only file
		// Once the link is back, the cache must not answer for the token
		// Redis lost.
		pollUntil(t, "linked again", func() bool { return mpauthx.CacheLinkUps(b) > ups })
		if mpauthx.CacheHolds(b, tok) || checkOf(t, b)(tok) {
			t.Error("the cache answers for a token that Redis lost")
		}
		var err error
		pollUntil(t, "logged in again", func() bool { tok, err = e.tryLogin(bg, u); return err == nil })
		holdOn(t, b, tok)
	})
	t.Run("FLUSHALL", func(t *testing.T) {
		// Redis announces a flush as one invalidation of everything.
		_, e, b, admin := cacheProcEnv(t)
		u := e.user("jon")
		tok := e.login(t, u)
		holdOn(t, b, tok)
		if err := admin.FlushAll(bg).Err(); err != nil {
			t.Fatal(err)
		}
		refusedOn(t, b, tok)
		revokeSeen(t, e, b, u)
	})
	t.Run("Redis paused", func(t *testing.T) {
		// A link that goes silent (here: the server stopped with SIGSTOP)
		// stops the cache answering once its lease runs out, and a PONG
		// on the same connection afterwards makes it answer again.
		p, e, b, _ := cacheProcEnv(t)
		tok := e.login(t, e.user("hal"))
		holdOn(t, b, tok)
		p.Pause()
		pollUntil(t, "bypassed while Redis does not answer", func() bool { return !mpauthx.CacheHolds(b, tok) })
		p.Resume()
		holdOn(t, b, tok)
	})
}

// TestLocalCacheRefusedByACL checks that a Redis user that may not track
// keys or subscribe to the invalidations (as on providers without CLIENT
// TRACKING) gets a Client that works as without the cache, and one log
// line saying why.
func TestLocalCacheRefusedByACL(t *testing.T) {
	for _, tc := range []struct{ name, rules string }{
		{"no CLIENT TRACKING", "allchannels +@all -client|tracking"},
		{"no invalidation channel", "resetchannels +@all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startRedis(t)
			admin := redis.NewClient(&redis.Options{Addr: p.Addr()})
			t.Cleanup(func() { admin.Close() })
			args := []any{"acl", "setuser", "app", "on", ">app-password", "~*"}
			for _, r := range strings.Fields(tc.rules) {
				args = append(args, r)
			}
			if err := admin.Do(bg, args...).Err(); err != nil {
				t.Fatal(err)
			}
			e := newProcWorld(t, p.Addr())
			var logs *logBuffer
			e.cfg.LocalCache = cacheSize
			e.cfg.Logger, logs = captureLogs(false)
			openKind(t, e, redisKind{name: "app user", client: func(addr string) *redis.Client {
				return redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "app-password"})
			}})
			pollUntil(t, "logged", func() bool { return cacheOffLines(logs) > 0 })
			tok := e.login(t, e.user("ivy"))
			for range 2 { // the second check would be a hit
				if !e.valid(t, tok) || mpauthx.CacheHolds(e.c, tok) {
					t.Error("the token is not valid, or held by a cache that is off")
				}
			}
			if err := e.c.RevokeToken(bg, tok); err != nil || e.valid(t, tok) {
				t.Errorf("revoke: %v; still valid: %v", err, e.valid(t, tok))
			}
			if n := cacheOffLines(logs); n != 1 {
				t.Errorf("%d log lines say the cache is off, want 1:\n%s", n, logs)
			}
		})
	}
}
