package mpauthx

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// cacheLink is one connection that carries a Redis server's invalidations
// to the cache: CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX
// mpauthx: on every connect, then SUBSCRIBE __redis__:invalidate (and, on
// one server, the channel of the rounds' markers). Its PINGs, numbered,
// come back after every invalidation Redis queued for it before, so a
// PONG tells what the link has heard of; what a PONG proves depends on
// the mode (cacheLink.pong).
type cacheLink struct {
	lc     *localCache
	client *redis.Client // PoolSize 1, Protocol 2, no retries of its own
	addr   string        // for the log
	chans  []string      // the channels it subscribes to

	// onMessage handles a message of a channel other than the
	// invalidations'; onPong a PONG of a PING sent with ping, given when
	// and at which epoch that PING was sent; onMarkerPong the PONG of a
	// PING whose payload was "m" and a number. Each may be nil.
	onMessage    func(l *cacheLink, ps *redis.PubSub, payload string)
	onPong       func(l *cacheLink, sent int64, epoch uint64)
	onMarkerPong func(seq uint64)

	ctx    context.Context // ends when the link is dropped or the cache stops
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	ps         atomic.Pointer[redis.PubSub] // nil while not connected
	gen        atomic.Uint64                // bumped when a connection has subscribed to every channel
	subscribed atomic.Bool                  // the connection gen is subscribed to every channel

	pingMu  sync.Mutex
	pingSeq uint64
	pings   [cachePings]cachePing
}

// cachePing is a PING sent on a link.
type cachePing struct {
	seq   uint64
	sent  int64
	epoch uint64
}

// newCacheLink returns a link with opt (a copy is changed: one connection
// of Protocol 2, named mpauthx-localcache, no retries, tracking on every
// connect) subscribing to chans, and starts it.
func (lc *localCache) newCacheLink(opt redis.Options, chans []string) *cacheLink {
	l := &cacheLink{lc: lc, addr: opt.Addr, chans: chans, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(lc.ctx)
	opt.Protocol = 2 // invalidations as Pub/Sub messages, which go-redis reads
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 1, 0, 0, 0
	opt.ClientName = cacheLinkName
	opt.MaxRetries = -1 // read reconnects, and empties the cache first
	ownOptions(&opt)
	callerOnConnect := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if callerOnConnect != nil {
			if err := callerOnConnect(ctx, cn); err != nil {
				return err
			}
		}
		return l.track(ctx, cn)
	}
	l.client = redis.NewClient(&opt)
	return l
}

// ownOptions makes opt, a copy of another client's options, the cache's
// own: no client-side cache of go-redis's, and a maintenance-notification
// config of its own (off: the cache's connections speak RESP2), not the
// one opt's pointer shares with that client, which go-redis writes to
// when that client connects.
func ownOptions(opt *redis.Options) {
	opt.ClientSideCacheConfig, opt.ClientSideCache = nil, nil
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// start runs the link on a goroutine of the cache's wait group.
func (l *cacheLink) start() {
	l.lc.wg.Add(1)
	go func() {
		defer l.lc.wg.Done()
		defer close(l.done)
		l.run()
	}()
}

// close stops the link: its connection, and its goroutine.
func (l *cacheLink) close() error {
	l.cancel()
	err := l.client.Close() // ends a Receive in flight
	<-l.done
	return err
}

// track turns tracking on for the link's new connection cn: invalidations
// of every key under keyPrefix, sent to cn itself as Pub/Sub messages once
// it subscribes. A refusal (an old server, a provider or an ACL without
// CLIENT TRACKING) turns the cache off.
func (l *cacheLink) track(ctx context.Context, cn *redis.Conn) error {
	id, err := cn.ClientID(ctx).Result()
	if err == nil {
		err = cn.Do(ctx, "client", "tracking", "on", "redirect", id, "bcast", "prefix", keyPrefix).Err()
	}
	if err != nil && refused(err) {
		l.lc.off("this Redis does not let mpauthx track its keys (CLIENT TRACKING, Redis 6 or later)", err)
	}
	return err
}

// run keeps the link connected until it stops: it subscribes, applies
// what comes, and after any error empties the cache, waits a little and
// connects again.
func (l *cacheLink) run() {
	wait := time.Duration(0)
	everUp := false
	for l.ctx.Err() == nil {
		ps := l.client.Subscribe(l.ctx, l.chans...)
		l.ps.Store(ps)
		up, err := l.receive(ps)
		l.subscribed.Store(false)
		l.ps.Store(nil)
		ps.Close()
		l.lc.flush()
		if l.ctx.Err() != nil {
			return
		}
		if noPermission(err) {
			l.lc.off("this Redis does not let mpauthx subscribe to the invalidations ("+strings.Join(l.chans, ", ")+")", err)
			return
		}
		if up || !everUp {
			l.lc.log.LogAttrs(l.ctx, slog.LevelWarn, "mpauthx: the local cache's link to Redis failed: checks read Redis until it is back",
				slog.String("redis", l.addr), slog.String("error", err.Error()))
		}
		everUp = everUp || up
		if up {
			wait = 0 // a link that worked: try again at once
		} else {
			wait = min(max(2*wait, cacheHeartbeat), cacheRetryMax)
		}
		select {
		case <-time.After(wait):
		case <-l.ctx.Done():
			return
		}
	}
}

// receive applies ps's messages until an error, and reports whether a
// PONG came meanwhile. A message it cannot parse (such as the
// invalidation of everything after FLUSHALL, which go-redis does not
// read) is an error too: the caller empties the cache.
func (l *cacheLink) receive(ps *redis.PubSub) (worked bool, err error) {
	for {
		msg, err := ps.ReceiveTimeout(l.ctx, cacheStall)
		if err != nil {
			return worked, err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// The first messages of every connection: go-redis reconnects
			// by itself when a PING or a read finds the connection dead,
			// and subscribes again. What was written meanwhile was
			// announced to no one.
			l.lc.flush()
			done := m.Kind == "subscribe" && m.Count == len(l.chans)
			if done {
				l.gen.Add(1)
			}
			l.subscribed.Store(done)
		case *redis.Message:
			if m.Channel != invalidateChan {
				if l.onMessage != nil {
					l.onMessage(l, ps, m.Payload)
				}
				continue
			}
			for _, key := range m.PayloadSlice {
				l.lc.invalidate(key)
			}
			if m.Payload != "" {
				l.lc.invalidate(m.Payload)
			}
		case *redis.Pong:
			worked = true
			if rest, ok := strings.CutPrefix(m.Payload, "m"); ok {
				if seq, err := strconv.ParseUint(rest, 10, 64); err == nil && l.onMarkerPong != nil {
					l.onMarkerPong(seq)
				}
				continue
			}
			l.pong(m.Payload)
		}
	}
}

// ping sends a numbered PING on the link, if it is connected.
func (l *cacheLink) ping() {
	ps := l.ps.Load()
	if ps == nil {
		return
	}
	l.pingMu.Lock()
	l.pingSeq++
	seq := l.pingSeq
	l.pings[seq%cachePings] = cachePing{seq: seq, sent: l.lc.now(), epoch: l.lc.epoch.Load()}
	l.pingMu.Unlock()
	_ = ps.Ping(l.ctx, strconv.FormatUint(seq, 10)) // the reader sees the link's errors
}

// pong hands the PONG of PING number payload to onPong.
func (l *cacheLink) pong(payload string) {
	seq, err := strconv.ParseUint(payload, 10, 64)
	if err != nil || l.onPong == nil {
		return
	}
	l.pingMu.Lock()
	p := l.pings[seq%cachePings]
	l.pingMu.Unlock()
	if p.seq == seq {
		l.onPong(l, p.sent, p.epoch)
	}
}

// reset replaces the link's connection, if it is still connection gen:
// go-redis then dials again, which for a Sentinel failover client asks
// the Sentinels where the primary is now.
func (l *cacheLink) reset(gen uint64) {
	if ps := l.ps.Load(); ps != nil && l.subscribed.Load() && l.gen.Load() == gen {
		ps.Close() // the reader's Receive fails: it empties the cache and connects again
	}
}
