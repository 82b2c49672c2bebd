package mpauthx

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The local cache on a *redis.Client: one server, or a Sentinel failover
// client, or any client whose Dialer decides where it connects. The link
// is a clone of the client's options, so it connects where the client
// would, but a connection, once made, stays where it is: after a Sentinel
// failover that leaves the old primary up, the link could go on hearing a
// server that no one writes to any more. So the lease is tied to the
// server the caller's client itself reaches, by rounds through it.
//
// A round, every cacheHeartbeat: the caller's client sends, in one
// pipeline, GET of the canary key and PUBLISH of the round's number to a
// channel of the link's own. The link is subscribed to it; when the
// number arrives, the link PINGs, and the PONG comes after every
// invalidation Redis queued before the PUBLISH's event-loop turn ended.
// So once both the replies and that PONG are in, every write that the
// server the caller's client reaches executed before the round was sent
// has been heard of: the cache may answer until cacheLease after the
// round's send.
//
//   - A PUBLISH that reached no subscriber means the caller's client and
//     the link are on different servers (the link on a demoted or
//     abandoned primary, the client on the new one): the link's
//     connection is replaced, and go-redis dials it where the client's
//     Dialer says now. Meanwhile no round completes, so the cache stops
//     answering within cacheLease of the last round that did.
//   - The canary key, of this cache's own, holds the value last stored:
//     Redis announces nothing when SWAPDB swaps the Client's database
//     for another, nor does a failover or a restart that hands over a
//     database without it. Missing or holding another value (a database
//     swapped out and back holds an older one), the key is stored again
//     with a new value and then the cache is flushed (in that order: a
//     swap in between is found by the next round). Its TTL is renewed
//     only while it holds the value (SET XX), so that a renewal cannot
//     hide a swap.
type serverRounds struct {
	lc        *localCache
	rdb       *redis.Client // the caller's
	link      *cacheLink
	part      *leasePart
	marker    string // the link's own channel
	canaryKey string

	mu     sync.Mutex
	rounds [cachePings]cacheRound
}

// cacheRound is a round sent through the caller's client.
type cacheRound struct {
	seq             uint64
	sent            int64
	epoch           uint64
	replied, ponged bool
}

// startServer starts the cache's link and rounds on the caller's rdb.
func (lc *localCache) startServer(rdb *redis.Client) {
	id := rand.Text()
	s := &serverRounds{lc: lc, rdb: rdb, marker: keyPrefix + "localcache:" + id, canaryKey: keyPrefix + "localcache-canary:" + id}
	s.part = lc.addPart()
	s.link = lc.newCacheLink(*rdb.Options(), []string{invalidateChan, s.marker})
	s.link.onMessage = s.arrived
	s.link.onMarkerPong = s.ponged
	lc.stop = s.link.close
	s.link.start()
	lc.wg.Add(1)
	go s.run()
}

// run sends a round every cacheHeartbeat, and a PING on the link, which
// keeps it from looking stalled while the rounds fail, until the cache
// stops.
func (s *serverRounds) run() {
	defer s.lc.wg.Done()
	t := time.NewTicker(cacheHeartbeat)
	defer t.Stop()
	var (
		seq    uint64
		want   string // the canary's value last stored; "" before the first store
		stored int64  // now() when it was stored or its TTL renewed
	)
	for {
		select {
		case <-s.lc.ctx.Done():
			return
		case <-t.C:
		}
		s.link.ping()
		if !s.link.subscribed.Load() {
			continue // Redis may not track at all: no canary written yet
		}
		gen := s.link.gen.Load()
		seq++
		r := cacheRound{seq: seq, sent: s.lc.now(), epoch: s.lc.epoch.Load()}
		s.mu.Lock()
		s.rounds[seq%cachePings] = r
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(s.lc.ctx, cacheFillTimeout)
		var (
			get *redis.StringCmd
			pub *redis.IntCmd
		)
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each command keeps its own error
			get = p.Get(ctx, s.canaryKey)
			pub = p.Publish(ctx, s.marker, strconv.FormatUint(seq, 10))
			return nil
		})
		got, gerr := get.Result()
		n, perr := pub.Result()
		switch {
		case noPermission(gerr) || noPermission(perr):
			s.lc.off("Redis does not let mpauthx run its rounds (GET and SET of mpauthx:localcache-canary:*, PUBLISH to mpauthx:localcache:*)", errors.Join(gerr, perr))
		case perr != nil || gerr != nil && !errors.Is(gerr, redis.Nil):
			// No proof this time: the lease runs out unless a later round
			// succeeds.
		case gerr != nil || got != want || want == "":
			v := rand.Text()
			err := s.rdb.Set(ctx, s.canaryKey, v, canaryTTL).Err()
			if err == nil {
				want, stored = v, r.sent
				s.lc.flush()
			} else if noPermission(err) {
				s.lc.off("Redis does not let mpauthx store its canary key (SET of mpauthx:localcache-canary:*)", err)
			}
		case n == 0:
			s.link.reset(gen)
		default:
			s.replied(seq)
			if r.sent-stored >= int64(canaryRefresh) && s.rdb.SetXX(ctx, s.canaryKey, want, canaryTTL).Err() == nil {
				stored = r.sent
			}
		}
		cancel()
	}
}

// arrived answers the marker of a round, on the link, with a PING whose
// PONG completes the round.
func (s *serverRounds) arrived(l *cacheLink, ps *redis.PubSub, payload string) {
	if _, err := strconv.ParseUint(payload, 10, 64); err == nil {
		_ = ps.Ping(l.ctx, "m"+payload) // the reader sees the link's errors
	}
}

// replied records that round seq's replies vouched for the server.
func (s *serverRounds) replied(seq uint64) { s.mark(seq, false) }

// ponged records that round seq's marker came back over the link.
func (s *serverRounds) ponged(seq uint64) { s.mark(seq, true) }

// mark records one half of round seq (its marker's PONG when pong is
// set, else its replies) and renews the lease once both are in.
func (s *serverRounds) mark(seq uint64, pong bool) {
	s.mu.Lock()
	r := &s.rounds[seq%cachePings]
	ok := r.seq == seq
	if ok && pong {
		r.ponged = true
	} else if ok {
		r.replied = true
	}
	done := ok && r.replied && r.ponged
	round := *r
	s.mu.Unlock()
	if done {
		s.lc.renew(s.part, round.sent+int64(cacheLease), round.epoch)
	}
}
