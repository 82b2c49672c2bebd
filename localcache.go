package mpauthx

import (
	"context"
	"crypto/subtle"
	"errors"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config.LocalCache: token checks answered in process, kept current by
// Redis itself (server-assisted client-side caching, CLIENT TRACKING).
// docs/localcache.md tells the design at length; in short:
//
//   - Links (localcache_link.go): one connection per Redis master, of the
//     cache's own, that runs CLIENT TRACKING ON REDIRECT <its own id>
//     BCAST PREFIX mpauthx: and SUBSCRIBE __redis__:invalidate. Redis
//     then announces every write of a key under the prefix to it, so
//     reads may go over any connection, and no read grows Redis's memory.
//   - The lease: the cache answers only until cacheLease after the send
//     of the last proof that every write Redis executed before that send
//     has been announced to the cache, from every server the Client's
//     reads and writes can reach. On one server (or a Sentinel failover
//     client, localcache_server.go) the proof is a round through the
//     caller's own client, whose marker must come back over the link; on
//     a Cluster (localcache_cluster.go), a PONG on each master's link and
//     an unchanged topology as every node tells it. A link error, a new
//     link connection, a topology change or a swapped database empties
//     the cache (flush) and voids the proofs sent before it.
//   - Only positive answers are cached, for well-formed tokens of this
//     Sku whose key held exactly their session: one entry per user ID,
//     with the session and the expiry the key's PTTL gave (read after the
//     check, in the background). A hit needs that exact session, an
//     unexpired entry and a live lease; anything else goes to Redis as
//     without the cache. An entry holding another session is not a
//     negative answer: the token may be newer than the entry.
//   - An invalidation (or a revoke or refresh by this Client) bumps the
//     generation of the user ID's stripe before deleting its entry; a
//     flush bumps the epoch. An entry is inserted only when neither
//     changed since before its check was sent to Redis, so an
//     invalidation that arrives between the read and the insert wins.
//   - At most Config.LocalCache entries, in up to 64 shards of at least
//     64 entries with a read-write lock each; a full shard evicts the
//     entry that expires first among a few it samples.
const (
	cacheHeartbeat   = 10 * time.Millisecond // how often a proof is sent
	cacheLease       = 50 * time.Millisecond // how long after a proof's send the cache may answer
	cacheStall       = 2 * time.Second       // a link silent this long is replaced
	cacheRetryMax    = time.Second           // the longest wait between attempts to reconnect a link
	cacheFillTimeout = time.Second           // bounds a batch of PTTLs, and a round or a poll
	cacheShardsMax   = 64
	cacheShardMin    = 64               // entries per shard at least, unless LocalCache is smaller
	cacheStripes     = 1024             // generation counters, by hash of user ID
	cacheFillQueue   = 1024             // entries waiting for their PTTL at most; more are not cached
	cacheFillBatch   = 256              // PTTLs in one pipeline at most
	cacheEvictSample = 5                // entries a full shard looks at to evict one
	cachePings       = 64               // proofs in flight that a reply can be matched with
	canaryTTL        = time.Hour        // the canary key's TTL
	canaryRefresh    = 10 * time.Minute // how often the canary key's TTL is renewed
	cacheLinkName    = "mpauthx-localcache"
	invalidateChan   = "__redis__:invalidate"
)

// localCache is the cache behind Config.LocalCache. A nil *localCache is
// a cache that is off: every method does nothing.
type localCache struct {
	sku      string
	seed     maphash.Seed
	base     time.Time // origin of now's monotonic clock
	mask     uint64    // len(shards)-1
	perShard int
	shards   []cacheShard
	gens     [cacheStripes]atomic.Uint64
	epoch    atomic.Uint64 // bumped by every flush, under leaseMu
	lease    atomic.Int64  // now() before which entries may be served; 0: none

	// leaseMu orders the renewals of the lease's parts with the flushes:
	// a proof sent before a flush never renews the lease after it.
	leaseMu sync.Mutex
	parts   []*leasePart // the lease is the earliest of them
	on      bool         // the lease was renewed since the last flush

	rdb   redis.UniversalClient // the Client's: the fills' PTTLs, and the rounds
	log   *slog.Logger
	fills chan cacheFill
	// fill reads the PTTLs of a batch of positive answers; nil: through
	// rdb in one pipeline.
	fill func(ctx context.Context, batch []cacheFill) []time.Duration

	ctx    context.Context // ends at close, or when the cache turns itself off
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   func() error // closes what the mode opened (links, probes)

	offOnce sync.Once    // the cache says once why it is off
	ups     atomic.Int64 // how many times the cache started answering after a flush

	// For the tests: how many invalidations of this Sku's session keys
	// were applied, how many positive answers the filler took, and a hook
	// that IsTokenValid calls right after its Redis read.
	invalidated, filled atomic.Int64
	afterRead           atomic.Pointer[func()]
}

// leasePart is one proof's share of the lease: until when (now() units)
// the last proof of its kind lets the cache answer. Guarded by leaseMu.
type leasePart struct{ until int64 }

// cacheShard is one lock's share of the entries, padded to its own cache
// lines.
type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry // by user ID
	_  [96]byte
}

// cacheEntry is the live session of a user ID and when it expires.
type cacheEntry struct {
	session string
	expires int64 // now() units
}

// cacheSnap is the state of a user ID's stripe before its check was sent;
// ok is false when the cache was not answering then.
type cacheSnap struct {
	epoch, gen uint64
	ok         bool
}

// cacheFill is a positive answer waiting for its key's PTTL.
type cacheFill struct {
	snap                 cacheSnap
	key, userID, session string
}

// newLocalCache returns the cache of up to size entries for sku's tokens
// on rdb, and starts it, or returns nil and logs why it cannot run on
// rdb's kind of Redis.
func newLocalCache(rdb redis.UniversalClient, sku string, size int, log *slog.Logger) *localCache {
	lc := newCacheStore(sku, size)
	lc.rdb, lc.log = rdb, log
	switch r := rdb.(type) {
	case *redis.Client:
		lc.startServer(r)
	case *redis.ClusterClient:
		if r.Options().ReadOnly {
			lc.cancel()
			log.LogAttrs(context.Background(), slog.LevelWarn, "mpauthx: Config.LocalCache is off: the ClusterClient reads from replicas (ReadOnly), which the cache cannot follow; every check reads Redis")
			return nil
		}
		lc.startCluster(r)
	default:
		lc.cancel()
		log.LogAttrs(context.Background(), slog.LevelWarn, "mpauthx: Config.LocalCache is off: it needs a *redis.Client (one server or a Sentinel failover client) or a *redis.ClusterClient; every check reads Redis",
			slog.String("redis", redisKind(rdb)))
		return nil
	}
	lc.wg.Add(1)
	go lc.filler()
	return lc
}

// newCacheStore returns the entries of a cache of up to size entries for
// sku's tokens, without links: it answers nothing until a lease is set.
func newCacheStore(sku string, size int) *localCache {
	n := 1 // shards: as many as keep cacheShardMin entries each, up to cacheShardsMax
	for n < cacheShardsMax && 2*n*cacheShardMin <= size {
		n *= 2
	}
	lc := &localCache{
		sku: sku, seed: maphash.MakeSeed(), base: time.Now(),
		mask: uint64(n - 1), perShard: size / n, shards: make([]cacheShard, n),
		fills: make(chan cacheFill, cacheFillQueue),
		log:   slog.New(slog.DiscardHandler),
	}
	lc.ctx, lc.cancel = context.WithCancel(context.Background())
	for i := range lc.shards {
		lc.shards[i].m = make(map[string]cacheEntry)
	}
	return lc
}

// redisKind names rdb's type for a log line.
func redisKind(rdb redis.UniversalClient) string {
	if _, ok := rdb.(*redis.Ring); ok {
		return "Ring"
	}
	return "unknown client type"
}

// close stops the links and the goroutines. A nil lc does nothing.
func (lc *localCache) close() error {
	if lc == nil {
		return nil
	}
	lc.cancel()
	var err error
	if lc.stop != nil {
		err = lc.stop() // ends the Receives in flight
	}
	lc.wg.Wait()
	return err
}

// off turns the cache off for good, saying why once at Warn.
func (lc *localCache) off(why string, err error) {
	lc.offOnce.Do(func() {
		attrs := []slog.Attr{}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		lc.log.LogAttrs(context.Background(), slog.LevelWarn, "mpauthx: Config.LocalCache is off: "+why+"; every check reads Redis", attrs...)
	})
	lc.flush()
	lc.cancel()
}

// now is the monotonic time in nanoseconds since the cache was made.
func (lc *localCache) now() int64 { return int64(time.Since(lc.base)) }

// hash spreads user IDs over shards and stripes.
func (lc *localCache) hash(userID string) uint64 { return maphash.String(lc.seed, userID) }

// hit reports whether the cache knows token userID|sku|session to be live:
// the lease is live, the entry holds exactly that session (compared in
// constant time) and has not expired.
func (lc *localCache) hit(userID, session string) bool {
	if lc == nil {
		return false
	}
	now := lc.now()
	if !lc.answering(now) {
		return false
	}
	sh := &lc.shards[lc.hash(userID)&lc.mask]
	sh.mu.RLock()
	e, ok := sh.m[userID]
	sh.mu.RUnlock()
	return ok && now < e.expires && subtle.ConstantTimeCompare([]byte(e.session), []byte(session)) == 1
}

// answering reports whether the cache may answer at now.
func (lc *localCache) answering(now int64) bool { return now < lc.lease.Load() }

// snapshot records the state of userID's stripe before its check is sent
// to Redis.
func (lc *localCache) snapshot(userID string) cacheSnap {
	if lc == nil {
		return cacheSnap{}
	}
	epoch := lc.epoch.Load()
	if !lc.answering(lc.now()) {
		return cacheSnap{}
	}
	return cacheSnap{epoch: epoch, gen: lc.gens[lc.hash(userID)%cacheStripes].Load(), ok: true}
}

// readDone runs the tests' hook, if any, between a check's Redis read and
// what IsTokenValid does with it.
func (lc *localCache) readDone() {
	if lc == nil {
		return
	}
	if f := lc.afterRead.Load(); f != nil {
		(*f)()
	}
}

// learn queues a positive answer for caching, once its key's PTTL is
// known. A full queue drops it: the next check tries again.
func (lc *localCache) learn(snap cacheSnap, key, userID, session string) {
	if lc == nil || !snap.ok {
		return
	}
	select {
	case lc.fills <- cacheFill{snap: snap, key: key, userID: userID, session: session}:
	default:
	}
}

// forget drops userID's entry, and any insert whose check was sent before
// now: what an invalidation of its key does, and what RevokeToken and
// RefreshToken do once Redis has their write.
func (lc *localCache) forget(userID string) {
	if lc == nil {
		return
	}
	h := lc.hash(userID)
	lc.gens[h%cacheStripes].Add(1) // before the delete: see insert
	sh := &lc.shards[h&lc.mask]
	sh.mu.Lock()
	delete(sh.m, userID)
	sh.mu.Unlock()
}

// insert caches f's session until expires, unless an invalidation or a
// flush came after f's snapshot. The check and the insert share the shard
// lock that forget takes after bumping the generation, so either the
// insert sees the bump or forget deletes what it inserted (and flush,
// which bumps the epoch before it empties the shards, likewise).
func (lc *localCache) insert(f cacheFill, expires int64) {
	h := lc.hash(f.userID)
	sh := &lc.shards[h&lc.mask]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if lc.epoch.Load() != f.snap.epoch || lc.gens[h%cacheStripes].Load() != f.snap.gen {
		return
	}
	if _, ok := sh.m[f.userID]; !ok && len(sh.m) >= lc.perShard {
		sh.evict(cacheEvictSample)
	}
	// Copies, so that an entry does not pin the caller's token or request.
	sh.m[strings.Clone(f.userID)] = cacheEntry{session: strings.Clone(f.session), expires: expires}
}

// evict deletes the entry that expires first among up to n that Go's
// randomised map iteration hands out. sh.mu is held.
func (sh *cacheShard) evict(n int) {
	var victim string
	first := true
	var earliest int64
	for k, e := range sh.m {
		if first || e.expires < earliest {
			victim, earliest, first = k, e.expires, false
		}
		if n--; n == 0 {
			break
		}
	}
	if !first {
		delete(sh.m, victim)
	}
}

// addPart adds a part to the lease; until it is renewed, the cache does
// not answer.
func (lc *localCache) addPart() *leasePart {
	p := &leasePart{}
	lc.leaseMu.Lock()
	lc.parts = append(lc.parts, p)
	lc.lease.Store(0)
	lc.leaseMu.Unlock()
	return p
}

// dropPart removes p from the lease.
func (lc *localCache) dropPart(p *leasePart) {
	lc.leaseMu.Lock()
	defer lc.leaseMu.Unlock()
	for i, q := range lc.parts {
		if q == p {
			lc.parts = append(lc.parts[:i], lc.parts[i+1:]...)
			break
		}
	}
	lc.store()
}

// renew extends p to until, the send of a proof plus cacheLease, unless
// a flush came after epoch (read before the proof was sent) or p is no
// longer part of the lease, and reports whether it did.
func (lc *localCache) renew(p *leasePart, until int64, epoch uint64) bool {
	lc.leaseMu.Lock()
	defer lc.leaseMu.Unlock()
	if lc.epoch.Load() != epoch || lc.ctx.Err() != nil {
		return false
	}
	found := false
	for _, q := range lc.parts {
		found = found || q == p
	}
	if !found {
		return false
	}
	p.until = max(p.until, until)
	lc.store()
	if !lc.on && lc.answering(lc.now()) {
		lc.on = true
		lc.ups.Add(1)
		lc.log.LogAttrs(lc.ctx, slog.LevelInfo, "mpauthx: the local cache is on: Redis tracks the token keys")
	}
	return true
}

// store sets the lease to the earliest of its parts. leaseMu is held.
func (lc *localCache) store() {
	if len(lc.parts) == 0 {
		lc.lease.Store(0)
		return
	}
	until := lc.parts[0].until
	for _, p := range lc.parts[1:] {
		until = min(until, p.until)
	}
	lc.lease.Store(until)
}

// flush empties the cache, refuses the inserts of the checks sent before
// it, and stops it answering until every part of the lease is renewed by
// a proof sent after it.
func (lc *localCache) flush() {
	lc.leaseMu.Lock()
	lc.epoch.Add(1)
	for _, p := range lc.parts {
		p.until = 0
	}
	lc.lease.Store(0)
	lc.on = false
	lc.leaseMu.Unlock()
	for i := range lc.shards {
		sh := &lc.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len returns the number of entries, expired ones included.
func (lc *localCache) len() int {
	n := 0
	for i := range lc.shards {
		sh := &lc.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// invalidate forgets the user ID of key, when it is a session key of this
// Client's Sku.
func (lc *localCache) invalidate(key string) {
	rest, ok := strings.CutPrefix(key, keyPrefix+"{")
	if !ok {
		return
	}
	if rest, ok = strings.CutSuffix(rest, "}:session"); !ok {
		return
	}
	if userID, sku, ok := strings.Cut(rest, "|"); ok && sku == lc.sku {
		lc.forget(userID)
		lc.invalidated.Add(1)
	}
}

// refused reports whether err is Redis refusing a command for good: an
// error reply other than a transient one (loading, busy, failing over).
func refused(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "ERR") || strings.HasPrefix(msg, "NOPERM")
}

// noPermission reports whether err is an ACL's refusal, or a command this
// Redis does not have: the cache could never answer. Other errors (even
// error replies, such as "max number of clients reached" on connect) are
// transient.
func noPermission(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "ERR unknown command")
}

// filler reads the PTTLs of the queued positive answers, in pipelines,
// and caches them, until the cache stops.
func (lc *localCache) filler() {
	defer lc.wg.Done()
	batch := make([]cacheFill, 0, cacheFillBatch)
	for {
		select {
		case <-lc.ctx.Done():
			return
		case f := <-lc.fills:
			batch = append(batch[:0], f)
		}
		lc.fillBatch(drain(lc.fills, batch, cacheFillBatch))
	}
}

// fillBatch reads the PTTL of each of batch's keys and caches the
// sessions until then. The expiry counts from before the PTTLs were sent,
// so an entry never outlives its key. A key without TTL, or gone, is not
// cached.
func (lc *localCache) fillBatch(batch []cacheFill) {
	ctx, cancel := context.WithTimeout(lc.ctx, cacheFillTimeout)
	defer cancel()
	sent := lc.now()
	var ttls []time.Duration
	if lc.fill != nil {
		ttls = lc.fill(ctx, batch)
	} else {
		ttls = pttls(ctx, lc.rdb, batch)
	}
	for i, f := range batch {
		if ttls[i] > 0 {
			lc.insert(f, sent+int64(ttls[i]))
		}
	}
	lc.filled.Add(int64(len(batch)))
}

// pttls reads the PTTL of each of batch's keys through rdb, in one
// pipeline; a key whose PTTL failed has 0.
func pttls(ctx context.Context, rdb redis.Cmdable, batch []cacheFill) []time.Duration {
	cmds := make([]*redis.DurationCmd, len(batch))
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each command keeps its own error
		for i, f := range batch {
			cmds[i] = p.PTTL(ctx, f.key)
		}
		return nil
	})
	ttls := make([]time.Duration, len(batch))
	for i, cmd := range cmds {
		if ttl, err := cmd.Result(); err == nil {
			ttls[i] = ttl
		}
	}
	return ttls
}
