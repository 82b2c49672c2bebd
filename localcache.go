package mpauthx

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config.LocalCache: token checks answered in process, kept current by
// Redis itself (server-assisted client-side caching, CLIENT TRACKING).
//
// mpauthx does not use go-redis's own client-side cache
// (Options.ClientSideCacheConfig): measured in the same run, its hit
// costs 0.7 µs and 5 allocations (a whole command through go-redis),
// its entries outlive the key's TTL until an invalidation or MaxStaleness,
// it caches nil replies (a flood of random tokens would fill it and
// Redis's tracking table) and it needs RESP3 and DB 0 on the caller's
// client. The cache here answers a hit in 0.2 µs without allocating; see
// docs/localcache.md for the figures.
//
// The design:
//
//   - The tracking link is one connection of its own (a clone of the
//     caller's *redis.Client options with Protocol 2 and PoolSize 1,
//     named mpauthx-localcache) that runs CLIENT TRACKING ON REDIRECT
//     <its own id> BCAST PREFIX mpauthx: when it connects, and then
//     SUBSCRIBE __redis__:invalidate. In BCAST mode Redis keeps no table
//     of the keys a client read: it announces every write of a key that
//     starts with the prefix (coalesced per event-loop turn), so reads may
//     go over any connection and no read can grow Redis's memory.
//   - A heartbeat PINGs the link every cacheHeartbeat. A PONG comes back on
//     the same connection after every invalidation Redis queued before it,
//     so once it is read, the cache reflects every write Redis executed
//     before the PING left: the cache may answer until cacheLease after
//     that PING was sent, and not later. A link that dies, stalls or is
//     refused therefore stops the hits within cacheLease, whatever the
//     network does; a link error empties the cache as well, and it
//     answers again only after a PONG of the new connection. (go-redis
//     may replace a dead connection by itself, inside a PING or a read:
//     the subscription it renews is the first message of the new
//     connection, and empties the cache too.)
//   - Only positive answers are cached, for well-formed tokens of this
//     Sku whose key held exactly their session: one entry per user ID,
//     with the session and the expiry the key's PTTL gave (read after the
//     check, in the background). A hit needs that exact session, an
//     unexpired entry and a live lease; anything else goes to Redis as
//     without the cache. An entry holding another session is not a
//     negative answer: the token may be newer than the entry.
//   - An invalidation (or a revoke or refresh by this Client) bumps the
//     generation of the user ID's stripe before deleting its entry; a
//     link error bumps the epoch. An entry is inserted only when neither
//     changed since before its check was sent to Redis, so an
//     invalidation that arrives between the read and the insert wins.
//   - Redis announces nothing when SWAPDB swaps the Client's database for
//     another. A canary key of the cache's own, stored in that database, is
//     read every cacheHeartbeat over a connection of its own (the link's
//     options, so the same server and database): the cache
//     answers only until cacheLease after the send of the last GET that
//     found it. A missing canary (swapped, flushed, expired, Redis
//     restarted) empties the cache once the canary is stored again.
//   - At most Config.LocalCache entries, in up to 64 shards of at least
//     64 entries with a read-write lock each; a full shard evicts the
//     entry that expires first among a few it samples.
const (
	cacheHeartbeat   = 10 * time.Millisecond // how often the link is PINGed
	cacheLease       = 50 * time.Millisecond // how long after a PING's send its PONG lets the cache answer
	cacheStall       = 2 * time.Second       // a link silent this long (no PONG) is replaced
	cacheRetryMax    = time.Second           // the longest wait between attempts to reconnect the link
	cacheFillTimeout = time.Second           // bounds a batch of PTTLs
	cacheShardsMax   = 64
	cacheShardMin    = 64               // entries per shard at least, unless LocalCache is smaller
	cacheStripes     = 1024             // generation counters, by hash of user ID
	cacheFillQueue   = 1024             // entries waiting for their PTTL at most; more are not cached
	cacheFillBatch   = 256              // PTTLs in one pipeline at most
	cacheEvictSample = 5                // entries a full shard looks at to evict one
	cachePings       = 64               // PINGs in flight that a PONG can be matched with
	canaryTTL        = time.Hour        // the canary key's TTL
	canaryRefresh    = 10 * time.Minute // how often the canary key's TTL is renewed
	cacheLinkName    = "mpauthx-localcache"
	cacheCanaryName  = "mpauthx-localcache-canary"
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
	epoch    atomic.Uint64 // bumped by every flush
	lease    atomic.Int64  // now() before which entries may be served; 0: none
	canaried atomic.Int64  // now() before which the canary vouches for the database; 0: not yet

	rdb   redis.UniversalClient // the Client's: the fills' PTTLs
	link  *redis.Client         // the tracking link's own client
	probe *redis.Client         // the canary's own client: the link's options, without tracking
	ps    atomic.Pointer[redis.PubSub]
	log   *slog.Logger
	fills chan cacheFill

	ctx    context.Context // ends at close, or when Redis refuses to track
	cancel context.CancelFunc
	wg     sync.WaitGroup

	canaryKey string // the canary: a key of this cache's own in the Client's database

	refusal atomic.Pointer[error] // why Redis cannot track, once known
	ups     atomic.Int64          // how many times the link came up

	// For the tests: how many invalidations of this Sku's session keys
	// were applied, how many positive answers the filler took, and a hook
	// that IsTokenValid calls right after its Redis read.
	invalidated, filled atomic.Int64
	afterRead           atomic.Pointer[func()]

	pingMu  sync.Mutex
	pingSeq uint64
	pings   [cachePings]cachePing
}

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

// cachePing is a PING sent on the link.
type cachePing struct {
	seq   uint64
	sent  int64
	epoch uint64
}

// newLocalCache returns the cache of up to size entries for sku's tokens
// on rdb, and starts its link, or returns nil and logs why it cannot run
// on rdb's kind of Redis.
func newLocalCache(rdb redis.UniversalClient, sku string, size int, log *slog.Logger) *localCache {
	r, ok := rdb.(*redis.Client)
	if !ok {
		log.LogAttrs(context.Background(), slog.LevelWarn, "mpauthx: Config.LocalCache is off: it needs a *redis.Client (one server or a Sentinel failover client); every check reads Redis",
			slog.String("redis", redisKind(rdb)))
		return nil
	}
	lc := newCacheStore(sku, size)
	lc.rdb, lc.log = rdb, log
	lc.ctx, lc.cancel = context.WithCancel(context.Background())
	opt := *r.Options()
	opt.Protocol = 2 // invalidations as Pub/Sub messages, which go-redis reads
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 1, 0, 0, 0
	opt.ClientName = cacheLinkName
	opt.MaxRetries = -1 // read reconnects, and empties the cache first
	opt.ClientSideCacheConfig, opt.ClientSideCache = nil, nil
	probeOpt := opt
	probeOpt.ClientName = cacheCanaryName
	lc.probe = redis.NewClient(&probeOpt)
	callerOnConnect := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if callerOnConnect != nil {
			if err := callerOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		return lc.track(ctx, cn)
	}
	lc.link = redis.NewClient(&opt)
	lc.canaryKey = keyPrefix + "localcache-canary:" + rand.Text()
	lc.wg.Add(4)
	go lc.read()
	go lc.heartbeat()
	go lc.filler()
	go lc.canary()
	return lc
}

// newCacheStore returns the entries of a cache of up to size entries for
// sku's tokens, without a link: it answers nothing until a lease is set.
func newCacheStore(sku string, size int) *localCache {
	n := 1 // shards: as many as keep cacheShardMin entries each, up to cacheShardsMax
	for n < cacheShardsMax && 2*n*cacheShardMin <= size {
		n *= 2
	}
	lc := &localCache{
		sku: sku, seed: maphash.MakeSeed(), base: time.Now(),
		mask: uint64(n - 1), perShard: size / n, shards: make([]cacheShard, n),
		fills: make(chan cacheFill, cacheFillQueue),
	}
	for i := range lc.shards {
		lc.shards[i].m = make(map[string]cacheEntry)
	}
	return lc
}

// redisKind names rdb's type for a log line.
func redisKind(rdb redis.UniversalClient) string {
	switch rdb.(type) {
	case *redis.ClusterClient:
		return "Redis Cluster"
	case *redis.Ring:
		return "Ring"
	}
	return "unknown client type"
}

// close stops the link and its goroutines. A nil lc does nothing.
func (lc *localCache) close() error {
	if lc == nil {
		return nil
	}
	lc.cancel()
	err := lc.link.Close() // ends a Receive in flight
	err = errors.Join(err, lc.probe.Close())
	lc.wg.Wait()
	return err
}

// now is the monotonic time in nanoseconds since the cache was made.
func (lc *localCache) now() int64 { return int64(time.Since(lc.base)) }

// hash spreads user IDs over shards and stripes.
func (lc *localCache) hash(userID string) uint64 { return maphash.String(lc.seed, userID) }

// hit reports whether the cache knows token userID|sku|session to be live:
// the link vouches for the cache, the entry holds exactly that session
// (compared in constant time) and has not expired.
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

// answering reports whether the cache may answer at now: both the link's
// lease and the canary's are live.
func (lc *localCache) answering(now int64) bool {
	return now < lc.lease.Load() && now < lc.canaried.Load()
}

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
// insert sees the bump or forget deletes what it inserted.
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

// flush empties the cache and stops it answering until the next PONG.
// Only the reader calls it, so that no PONG renews the lease in between.
func (lc *localCache) flush() {
	lc.lease.Store(0)
	lc.purge()
}

// purge empties the cache, and refuses the inserts of the checks sent
// before it.
func (lc *localCache) purge() {
	lc.epoch.Add(1)
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

// track turns tracking on for the link's new connection cn: invalidations
// of every key under keyPrefix, sent to cn itself as Pub/Sub messages once
// it subscribes. A refusal (an old server, a provider or an ACL without
// CLIENT TRACKING) is recorded: the cache then stays off.
func (lc *localCache) track(ctx context.Context, cn *redis.Conn) error {
	id, err := cn.ClientID(ctx).Result()
	if err == nil {
		err = cn.Do(ctx, "client", "tracking", "on", "redirect", id, "bcast", "prefix", keyPrefix).Err()
	}
	if err != nil && refused(err) {
		lc.refusal.CompareAndSwap(nil, &err)
	}
	return err
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

// noPermission reports whether err is an ACL's refusal, such as of the
// SUBSCRIBE to the invalidation channel. Other errors of the link (even
// error replies, such as "max number of clients reached" on connect) are
// transient.
func noPermission(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOPERM")
}

// read runs the link until close: it subscribes, applies invalidations and
// PONGs, and after any error empties the cache, waits a little and
// connects again. When Redis refuses to track, it logs why once and stops
// the cache.
func (lc *localCache) read() {
	defer lc.wg.Done()
	wait := time.Duration(0)
	everUp := false
	for lc.ctx.Err() == nil {
		ps := lc.link.Subscribe(lc.ctx, invalidateChan)
		lc.ps.Store(ps)
		up, err := lc.receive(ps)
		lc.ps.Store(nil)
		ps.Close()
		lc.flush()
		if lc.ctx.Err() != nil {
			return
		}
		if p := lc.refusal.Load(); p != nil || noPermission(err) {
			if p != nil {
				err = *p
			}
			lc.log.LogAttrs(lc.ctx, slog.LevelWarn, "mpauthx: Config.LocalCache is off: this Redis does not let mpauthx track its keys (CLIENT TRACKING, Redis 6 or later); every check reads Redis",
				slog.String("error", err.Error()))
			lc.cancel()
			return
		}
		if up || !everUp {
			lc.log.LogAttrs(lc.ctx, slog.LevelWarn, "mpauthx: the local cache's link to Redis failed: checks read Redis until it is back",
				slog.String("error", err.Error()))
		}
		everUp = everUp || up
		if up {
			wait = 0 // a link that worked: try again at once
		} else {
			wait = min(max(2*wait, cacheHeartbeat), cacheRetryMax)
		}
		select {
		case <-time.After(wait):
		case <-lc.ctx.Done():
			return
		}
	}
}

// receive applies ps's messages until an error, and reports whether a
// PONG made the cache answer meanwhile. A message it cannot parse (such
// as the invalidation of everything after FLUSHALL, which go-redis does
// not read) is an error too: the caller empties the cache.
func (lc *localCache) receive(ps *redis.PubSub) (worked bool, err error) {
	answering := false
	for {
		msg, err := ps.ReceiveTimeout(lc.ctx, cacheStall)
		if err != nil {
			return worked, err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// The first message of every connection: go-redis reconnects
			// by itself when a PING or a read finds the connection dead,
			// and subscribes again. What was written meanwhile was
			// announced to no one.
			lc.flush()
			answering = false
		case *redis.Message:
			if m.Channel != invalidateChan {
				continue
			}
			for _, key := range m.PayloadSlice {
				lc.invalidate(key)
			}
			if m.Payload != "" {
				lc.invalidate(m.Payload)
			}
		case *redis.Pong:
			if lc.renew(m.Payload) && !answering {
				answering, worked = true, true
				lc.ups.Add(1)
				lc.log.LogAttrs(lc.ctx, slog.LevelInfo, "mpauthx: the local cache is on: Redis tracks the token keys")
			}
		}
	}
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

// heartbeat PINGs the link every cacheHeartbeat, numbering each PING, until
// the cache stops.
func (lc *localCache) heartbeat() {
	defer lc.wg.Done()
	t := time.NewTicker(cacheHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-lc.ctx.Done():
			return
		case <-t.C:
		}
		ps := lc.ps.Load()
		if ps == nil {
			continue
		}
		lc.pingMu.Lock()
		lc.pingSeq++
		seq := lc.pingSeq
		lc.pings[seq%cachePings] = cachePing{seq: seq, sent: lc.now(), epoch: lc.epoch.Load()}
		lc.pingMu.Unlock()
		_ = ps.Ping(lc.ctx, strconv.FormatUint(seq, 10)) // the reader sees the link's errors
	}
}

// renew extends the lease after the PONG of PING number payload, unless
// that PING was sent before the last flush, and reports whether it did.
func (lc *localCache) renew(payload string) bool {
	seq, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return false
	}
	lc.pingMu.Lock()
	p := lc.pings[seq%cachePings]
	lc.pingMu.Unlock()
	if p.seq != seq || p.epoch != lc.epoch.Load() {
		return false
	}
	if until := p.sent + int64(cacheLease); until > lc.lease.Load() {
		lc.lease.Store(until) // only the reader writes lease
	}
	return true
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
		lc.fill(drain(lc.fills, batch, cacheFillBatch))
	}
}

// fill reads the PTTL of each of batch's keys and caches the sessions
// until then. The expiry counts from before the PTTLs were sent, so an
// entry never outlives its key. A key without TTL, or gone, is not cached.
func (lc *localCache) fill(batch []cacheFill) {
	ctx, cancel := context.WithTimeout(lc.ctx, cacheFillTimeout)
	defer cancel()
	sent := lc.now()
	cmds := make([]*redis.DurationCmd, len(batch))
	_, _ = lc.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each command keeps its own error
		for i, f := range batch {
			cmds[i] = p.PTTL(ctx, f.key)
		}
		return nil
	})
	for i, f := range batch {
		if ttl, err := cmds[i].Result(); err == nil && ttl > 0 {
			lc.insert(f, sent+int64(ttl))
		}
	}
	lc.filled.Add(int64(len(batch)))
}

// canary vouches, every cacheHeartbeat once the link has answered, that
// the Client's database is still the one whose writes the link announces:
// Redis announces nothing when SWAPDB swaps it for another (nor when a
// failover or a restart hands it over empty, which the link's reconnect
// covers). It reads the canary key over a connection of its own (same
// server and database as the Client's, but no wait for the Client's pool
// when the application keeps it busy): holding
// the value last stored, it lets the cache answer until cacheLease after
// that GET's send. Missing or holding another value (a database swapped
// out and back holds an older one), the key is stored again with a new
// value and then the cache is purged (in that order: a swap in between is
// found by the next GET), and the next GET that finds the new value lets
// the cache answer again. Its TTL is renewed only while it holds the
// value (SET XX), so that a renewal cannot hide a swap.
func (lc *localCache) canary() {
	defer lc.wg.Done()
	t := time.NewTicker(cacheHeartbeat)
	defer t.Stop()
	var (
		want   string // the value last stored; "" before the first store
		stored int64  // now() when it was stored or its TTL renewed
	)
	for {
		select {
		case <-lc.ctx.Done():
			return
		case <-t.C:
		}
		if lc.ups.Load() == 0 {
			continue // the link never answered: Redis may not track at all
		}
		ctx, cancel := context.WithTimeout(lc.ctx, cacheFillTimeout)
		sent := lc.now()
		got, err := lc.probe.Get(ctx, lc.canaryKey).Result()
		switch {
		case err == nil && got == want && want != "":
			if until := sent + int64(cacheLease); until > lc.canaried.Load() {
				lc.canaried.Store(until) // only this goroutine writes canaried
			}
			if sent-stored >= int64(canaryRefresh) && lc.probe.SetXX(ctx, lc.canaryKey, want, canaryTTL).Err() == nil {
				stored = sent
			}
		case err == nil || errors.Is(err, redis.Nil):
			v := rand.Text()
			if err = lc.probe.Set(ctx, lc.canaryKey, v, canaryTTL).Err(); err == nil {
				want, stored = v, sent
				lc.purge()
			}
		}
		cancel()
		if noPermission(err) { // an ACL that denies the canary key: the cache could never answer
			lc.log.LogAttrs(lc.ctx, slog.LevelWarn, "mpauthx: Config.LocalCache is off: Redis does not let mpauthx read and write its canary key (GET and SET of mpauthx:localcache-canary:*); every check reads Redis",
				slog.String("error", err.Error()))
			lc.cancel()
			return
		}
	}
}
