package mpauthx

import (
	"strconv"
	"testing"
	"time"
)

// The local cache's entries without a link: the ordering of checks,
// invalidations and inserts, the hit's conditions, and the bound on
// memory. The link is tested against real servers in localcache_test.go
// and localcache_faults_test.go.

const testSku = "sku-cache"

// testCache returns a cache of size entries that answers for an hour.
func testCache(size int) *localCache {
	lc := newCacheStore(testSku, size)
	lc.lease.Store(lc.now() + int64(time.Hour))
	return lc
}

// cacheKey is the Redis key of userID's session in testSku.
func cacheKey(userID string) string { return keyPrefix + "{" + userID + "|" + testSku + "}:session" }

// checked runs what IsTokenValid does around a Redis read that found
// session live: the snapshot before the read, then between in the
// middle, then the insert (what the filler does once the PTTL is known).
func checked(lc *localCache, userID, session string, between func()) {
	snap := lc.snapshot(userID)
	between()
	if snap.ok {
		lc.insert(cacheFill{snap: snap, key: cacheKey(userID), userID: userID, session: session}, lc.now()+int64(time.Hour))
	}
}

// otherStripe returns a user ID whose generation stripe is not userID's.
func otherStripe(lc *localCache, userID string) string {
	for i := 0; ; i++ {
		o := "other" + strconv.Itoa(i)
		if lc.hash(o)%cacheStripes != lc.hash(userID)%cacheStripes {
			return o
		}
	}
}

func TestCacheOrdering(t *testing.T) {
	const u, s = "ouser", "SESSIONAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name    string
		between func(lc *localCache)
		held    bool
	}{
		{"nothing in between", func(*localCache) {}, true},
		{"its key invalidated", func(lc *localCache) { lc.invalidate(cacheKey(u)) }, false},
		{"revoked or refreshed by this Client", func(lc *localCache) { lc.forget(u) }, false},
		{"the link reconnected", func(lc *localCache) { lc.flush(); lc.lease.Store(lc.now() + int64(time.Hour)) }, false},
		{"another user invalidated", func(lc *localCache) { lc.invalidate(cacheKey(otherStripe(lc, u))) }, true},
		{"its user ID under another Sku invalidated", func(lc *localCache) { lc.invalidate(keyPrefix + "{" + u + "|other}:session") }, true},
		{"another key of the prefix invalidated", func(lc *localCache) { lc.invalidate(keyPrefix + "something-else") }, true},
		// A late PONG on the same connection: the invalidations before it
		// arrived first, so the entry is as good as the others.
		{"the lease ran out and was renewed", func(lc *localCache) { lc.lease.Store(0) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := testCache(100)
			checked(lc, u, s, func() { tc.between(lc) })
			lc.lease.Store(lc.now() + int64(time.Hour))
			if got := lc.hit(u, s); got != tc.held {
				t.Errorf("hit = %v, want %v", got, tc.held)
			}
		})
	}
	t.Run("not answering when the check was sent", func(t *testing.T) {
		lc := testCache(100)
		lc.lease.Store(0)
		if lc.snapshot(u).ok {
			t.Fatal("a snapshot without a lease is usable")
		}
		lc.learn(lc.snapshot(u), cacheKey(u), u, s)
		if len(lc.fills) != 0 {
			t.Error("a check sent while the cache did not answer was queued for caching")
		}
	})
}

func TestCacheHit(t *testing.T) {
	const u, s = "ouser", "SESSIONAAAAAAAAAAAAAAAAAAA"
	lc := testCache(100)
	checked(lc, u, s, func() {})
	for _, tc := range []struct {
		name          string
		userID, token string
		want          bool
	}{
		{"its session", u, s, true},
		{"another session", u, "SESSIONBBBBBBBBBBBBBBBBBBB", false},
		{"a prefix of it", u, s[:25], false},
		{"another user", "o2", s, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lc.hit(tc.userID, tc.token); got != tc.want {
				t.Errorf("hit = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("the lease ran out", func(t *testing.T) {
		lc := testCache(100)
		checked(lc, u, s, func() {})
		lc.lease.Store(lc.now())
		if lc.hit(u, s) {
			t.Error("a hit without a lease")
		}
	})
	t.Run("one part of the lease ran out", func(t *testing.T) {
		lc := newCacheStore(testSku, 100)
		a, b := lc.addPart(), lc.addPart()
		epoch := lc.epoch.Load()
		lc.renew(a, lc.now()+int64(time.Hour), epoch)
		lc.renew(b, lc.now()+int64(time.Hour), epoch)
		checked(lc, u, s, func() {})
		if !lc.hit(u, s) {
			t.Fatal("no hit with both parts live")
		}
		lc.leaseMu.Lock()
		b.until = lc.now()
		lc.store()
		lc.leaseMu.Unlock()
		if lc.hit(u, s) || lc.snapshot(u).ok {
			t.Error("an answer with one part of the lease run out")
		}
		lc.renew(b, lc.now()+int64(time.Hour), epoch)
		if !lc.hit(u, s) {
			t.Error("no hit once the part is renewed")
		}
		lc.dropPart(a)
		lc.dropPart(b)
		if lc.hit(u, s) {
			t.Error("a hit with no part at all")
		}
	})
	t.Run("a proof sent before a flush", func(t *testing.T) {
		lc := newCacheStore(testSku, 100)
		p := lc.addPart()
		epoch := lc.epoch.Load()
		lc.flush()
		if lc.renew(p, lc.now()+int64(time.Hour), epoch) || lc.answering(lc.now()) {
			t.Error("a proof sent before a flush renewed the lease")
		}
	})
	t.Run("expired", func(t *testing.T) {
		lc := testCache(100)
		snap := lc.snapshot(u)
		lc.insert(cacheFill{snap: snap, key: cacheKey(u), userID: u, session: s}, lc.now()) // expires now
		if lc.hit(u, s) {
			t.Error("a hit on an expired entry")
		}
	})
	t.Run("a nil cache", func(t *testing.T) {
		var lc *localCache
		lc.learn(lc.snapshot(u), cacheKey(u), u, s)
		lc.forget(u)
		if lc.hit(u, s) || lc.close() != nil {
			t.Error("a nil cache answered")
		}
	})
}

func TestCacheBounded(t *testing.T) {
	for _, size := range []int{1, 4, 63, 64, 1000, 100_000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			lc := testCache(size)
			for i := range 3*size + 10 {
				checked(lc, "o"+strconv.Itoa(i), "S", func() {})
				if n := lc.len(); n > size {
					t.Fatalf("%d entries after %d inserts, more than %d", n, i+1, size)
				}
			}
			if n := lc.len(); n < size/2 {
				t.Errorf("%d entries of %d after many inserts", n, size)
			}
		})
	}
	t.Run("the entry that expires first goes", func(t *testing.T) {
		lc := testCache(cacheEvictSample) // one shard the sample covers
		now := lc.now()
		for i := range cacheEvictSample {
			lc.insert(cacheFill{snap: lc.snapshot("o" + strconv.Itoa(i)), userID: "o" + strconv.Itoa(i), session: "S"}, now+int64(time.Hour)-int64(i))
		}
		lc.insert(cacheFill{snap: lc.snapshot("new"), userID: "new", session: "S"}, now+int64(time.Hour))
		last := "o" + strconv.Itoa(cacheEvictSample-1) // expires first
		if lc.hit(last, "S") || !lc.hit("new", "S") || !lc.hit("o0", "S") {
			t.Errorf("evicted the wrong entry: %v %v %v", lc.hit(last, "S"), lc.hit("new", "S"), lc.hit("o0", "S"))
		}
	})
}

func TestCacheHitAllocs(t *testing.T) {
	const u, s = "ouser", "SESSIONAAAAAAAAAAAAAAAAAAA"
	lc := testCache(100)
	checked(lc, u, s, func() {})
	if n := testing.AllocsPerRun(100, func() {
		if !lc.hit(u, s) {
			t.Fatal("no hit")
		}
	}); n != 0 {
		t.Errorf("a hit allocates %v times", n)
	}
}

// FuzzCacheInvalidate feeds the invalidation parser keys as Redis sends
// them: it never panics, and the session key of a user ID of the cache's
// Sku forgets exactly that user.
func FuzzCacheInvalidate(f *testing.F) {
	f.Add("ouser", cacheKey("ouser"))
	f.Add("o|x", "mpauthx:{o|x|"+testSku+"}:session")
	f.Add("o}", "mpauthx:{o}|"+testSku+"}:session}:session")
	f.Add("", "mpauthx:{")
	f.Fuzz(func(t *testing.T, userID, key string) {
		lc := testCache(100)
		checked(lc, userID, "S", func() {})
		lc.invalidate(key)
		if validUserID(userID) && lc.hit(userID, "S") == (key == cacheKey(userID)) {
			t.Errorf("invalidate(%q): user %q held %v", key, userID, lc.hit(userID, "S"))
		}
		lc.invalidate(cacheKey(userID))
		if validUserID(userID) && lc.hit(userID, "S") {
			t.Errorf("the key of %q did not forget it", userID)
		}
	})
}
