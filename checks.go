package mpauthx

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// checkBatchFull and checkBatchesInFlight shape the batches of
// IsTokenValid's reads (see checkBatcher): a second batch leaves while the
// first is on the wire only once it holds checkBatchFull reads. With 64
// goroutines checking, this settles into two batches of about 32 taking
// turns, so that one batch's callers prepare their next check while Redis
// answers the other. See BenchmarkIsTokenValid and docs/performance.md.
const (
	checkBatchFull       = 32
	checkBatchesInFlight = 2
	nodeBatchesInFlight  = 1
	checkBatchMax        = 512     // keys in one MGET or pipeline at most
	checkQueueMax        = 1 << 16 // reads waiting for a batch at most
)

var (
	// errBatcherClosed fails a read asked for after the batcher's close.
	errBatcherClosed = errors.New("mpauthx: the token checker is closed")
	// errCheckQueueFull fails a read that finds checkQueueMax others
	// queued (some may be of callers who left): Redis is far behind, and
	// queueing more would only hold memory and send reads whose callers
	// have long gone.
	errCheckQueueFull = errors.New("mpauthx: too many token checks waiting for Redis")
	// errMGETCount fails a batch whose MGET answered a number of values
	// other than the number of keys (a proxy in the way, say).
	errMGETCount = errors.New("mpauthx: MGET answered the wrong number of values")
)

// checkBatcher coalesces the Redis reads of concurrent IsTokenValid calls:
// one MGET per batch on a *redis.Client, one pipeline of GETs on a Ring
// (whose keys live on several nodes), so that many checks share one round
// trip and, with MGET, one command. On a ClusterClient the reads are
// batched per master (see nodeBatchers): each master gets a batcher of its
// own, whose batches are pipelines of GETs sent straight to it. A batch leaves
// at once when none is in flight, so a lone check waits for no other; when
// one is, the next leaves as soon as it is full (checkBatchFull) or the
// one in flight returns, at most checkBatchesInFlight at a time. The
// worker that brings a batch back sends the next one itself, without a
// hand-off.
//
// The batches run on the batcher's workers, on a context of their own, so
// that a caller can stop waiting when its ctx ends (its read still runs,
// and its answer is dropped). The client's ReadTimeout and WriteTimeout
// bound each attempt; go-redis may retry a batch whose connection dropped
// or timed out, which is harmless for reads. The reads of callers who
// left before their batch was sent are not sent, and at most maxQueued
// reads wait (Redis being slow or down): more fail at once (per master on
// a Cluster). A batch on a Ring waits for its slowest node.
type checkBatcher struct {
	fetch       func(ctx context.Context, keys []string, out []checkResult)
	plain       redis.UniversalClient // for lone reads whose ctx cannot end
	nodes       *nodeBatchers         // on a ClusterClient: the batchers of its masters
	waiting     atomic.Int64          // callers inside get
	maxQueued   int                   // checkQueueMax; tests lower it
	maxInFlight int                   // batches in flight at most
	// reqs recycles the requests of the callers that waited for their
	// answers; a request whose caller gave up is left to the garbage
	// collector, since a worker may still write to it.
	reqs sync.Pool

	mu       sync.Mutex
	queue    []*checkReq
	inFlight int  // batches sent and not yet answered
	closed   bool // close was called: no new reads
	work     chan []*checkReq
	workers  sync.WaitGroup
}

// checkReq is one queued read; done receives its answer once.
type checkReq struct {
	key  string
	res  checkResult
	done chan struct{} // buffered: a worker never waits for a caller
	left atomic.Bool   // the caller stopped waiting: no need to send it
}

// checkResult is the value at a key: found is false when there is none.
type checkResult struct {
	val   string
	found bool
	err   error
}

// newCheckBatcher returns a batcher reading through rdb and starts its
// workers; close stops them.
func newCheckBatcher(rdb redis.UniversalClient) *checkBatcher {
	switch c := rdb.(type) {
	case *redis.Client:
		return newFetchBatcher(rdb, checkBatchesInFlight, func(ctx context.Context, keys []string, out []checkResult) { mget(ctx, c, keys, out) })
	case *redis.ClusterClient:
		b := newFetchBatcher(rdb, checkBatchesInFlight, func(ctx context.Context, keys []string, out []checkResult) { pipelinedGets(ctx, rdb, keys, out) })
		b.nodes = &nodeBatchers{cc: c, m: map[*redis.Client]*checkBatcher{}}
		return b
	default:
		return newFetchBatcher(rdb, checkBatchesInFlight, func(ctx context.Context, keys []string, out []checkResult) { pipelinedGets(ctx, rdb, keys, out) })
	}
}

// newFetchBatcher returns a batcher whose batches are read by fetch, and
// whose lone reads by plain, and starts its workers.
func newFetchBatcher(plain redis.UniversalClient, inFlight int, fetch func(ctx context.Context, keys []string, out []checkResult)) *checkBatcher {
	b := &checkBatcher{plain: plain, fetch: fetch, maxQueued: checkQueueMax, work: make(chan []*checkReq, inFlight), maxInFlight: inFlight}
	b.reqs.New = func() any { return &checkReq{done: make(chan struct{}, 1)} }
	b.workers.Add(inFlight)
	for range inFlight {
		go b.worker()
	}
	return b
}

// get returns the value at key, found false when there is none. It
// returns ctx.Err() as soon as ctx ends, even while the read is queued or
// on the wire. A lone read whose ctx can never end (its Done is nil, as
// for context.Background) is a plain GET on the caller's goroutine:
// handing it to a worker would only add two wake-ups to its round trip.
// (That path does not look at close: the Client checks for Close first.)
func (b *checkBatcher) get(ctx context.Context, key string) (val string, found bool, err error) {
	defer b.waiting.Add(-1)
	if b.waiting.Add(1) == 1 && ctx.Done() == nil {
		res := readResult(b.plain.Get(ctx, key).Result())
		return res.val, res.found, res.err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if b.nodes != nil {
		if nb := b.nodes.forKey(ctx, key); nb != nil {
			return nb.get(ctx, key)
		}
		// No slot map (the Cluster is unreachable, or b is closed):
		// the batch through the ClusterClient reports why.
	}
	r := b.reqs.Get().(*checkReq)
	r.key = key
	b.mu.Lock()
	if b.closed || len(b.queue) >= b.maxQueued {
		err := errBatcherClosed
		if !b.closed {
			err = errCheckQueueFull
		}
		b.mu.Unlock()
		b.reqs.Put(r)
		return "", false, err
	}
	b.queue = append(b.queue, r)
	batch := b.takeLocked()
	b.mu.Unlock()
	if batch != nil {
		b.work <- batch // never blocks: takeLocked counted it in inFlight
	}
	select {
	case <-r.done:
		res := r.res
		r.res = checkResult{}
		b.reqs.Put(r)
		return res.val, res.found, res.err
	case <-ctx.Done():
		r.left.Store(true)
		return "", false, ctx.Err()
	}
}

// takeLocked returns the next batch to send, or nil when it should wait:
// the queue is empty, checkBatchesInFlight are in flight, or one is and
// the queue is not full yet. b.mu is held.
func (b *checkBatcher) takeLocked() []*checkReq {
	n := len(b.queue)
	if n == 0 || b.inFlight >= b.maxInFlight || (b.inFlight > 0 && n < checkBatchFull) {
		return nil
	}
	n = min(n, checkBatchMax)
	batch := make([]*checkReq, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.inFlight++
	return batch
}

// worker sends the batches it is given, and the ones that are ready when
// each comes back, until close.
func (b *checkBatcher) worker() {
	defer b.workers.Done()
	ctx := context.Background()
	var keys []string
	var out []checkResult
	for batch := range b.work {
		for batch != nil {
			batch = slices.DeleteFunc(batch, func(r *checkReq) bool { return r.left.Load() })
			keys = keys[:0]
			for _, r := range batch {
				keys = append(keys, r.key)
			}
			if cap(out) < len(batch) {
				out = make([]checkResult, len(batch))
			}
			out = out[:len(batch)]
			if len(batch) > 0 {
				b.fetch(ctx, keys, out)
			}
			b.mu.Lock()
			b.inFlight--
			next := b.takeLocked() // nil once closed: close emptied the queue
			if b.closed && b.inFlight == 0 {
				close(b.work) // no call can add to it
			}
			b.mu.Unlock()
			for i, r := range batch {
				r.res = out[i]
				r.done <- struct{}{} // r is the caller's (or garbage) from here on
			}
			batch = next
		}
	}
}

// close fails the reads still queued and those asked for afterwards with
// errBatcherClosed, waits for the batches in flight (which the client's
// ReadTimeout and WriteTimeout bound, per attempt) and stops the workers.
// A nil b does nothing.
func (b *checkBatcher) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for _, r := range b.queue {
			r.res = checkResult{err: errBatcherClosed}
			r.done <- struct{}{}
		}
		clear(b.queue)
		b.queue = nil
		if b.inFlight == 0 {
			close(b.work)
		}
	}
	b.mu.Unlock()
	b.workers.Wait()
	b.nodes.close()
}

// mget reads keys with one MGET. A key holding something other than a
// string reads as absent, as MGET answers.
func mget(ctx context.Context, c *redis.Client, keys []string, out []checkResult) {
	vals, err := c.MGet(ctx, keys...).Result()
	if err == nil && len(vals) != len(keys) {
		err = errMGETCount
	}
	for i := range out {
		if err != nil {
			out[i] = checkResult{err: err}
			continue
		}
		s, ok := vals[i].(string)
		out[i] = checkResult{val: s, found: ok}
	}
}

// pipelinedGets reads keys with a pipeline of GETs, which go-redis splits
// by node on a ClusterClient or a Ring.
func pipelinedGets(ctx context.Context, rdb redis.UniversalClient, keys []string, out []checkResult) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // each command keeps its own error
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	for i, cmd := range cmds {
		out[i] = readResult(cmd.Result())
	}
}

// readResult turns a GET's answer into a checkResult. A key that holds
// something other than a string reads as absent, as it does in an MGET.
func readResult(val string, err error) checkResult {
	switch {
	case err == nil:
		return checkResult{val: val, found: true}
	case errors.Is(err, redis.Nil), redis.HasErrorPrefix(err, "WRONGTYPE"):
		return checkResult{}
	default:
		return checkResult{err: err}
	}
}

// nodeBatchers batches the reads of a Redis Cluster per master: a key's
// read joins the batcher of the master that holds its slot, in
// go-redis's slot map, and each batcher sends its batches to that master
// alone, as one pipeline of GETs on one connection. (Keys of different
// users are in different slots, and a Cluster refuses an MGET across
// slots, even on one node.) Batches per master are as large as the reads
// in flight on it allow, rather than a slice of one batch for the whole
// Cluster split by node, and cost no go-redis cluster pipeline (mapping
// commands to nodes, a goroutine per node). A read that fails on its
// master (its slot has moved, the node is failing over) is read again
// through the ClusterClient, which follows redirections and refreshes
// its slot map. A master that leaves the Cluster keeps its batcher, idle
// (one goroutine), until close.
type nodeBatchers struct {
	cc     *redis.ClusterClient
	mu     sync.Mutex
	closed bool
	m      map[*redis.Client]*checkBatcher // by go-redis's client of the master
}

// forKey returns the batcher of the master holding key, starting it if
// need be, or nil when there is no slot map or n is closed.
func (n *nodeBatchers) forKey(ctx context.Context, key string) *checkBatcher {
	node, err := n.cc.MasterForKey(ctx, key)
	if err != nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	b := n.m[node]
	if b == nil {
		b = newFetchBatcher(n.cc, nodeBatchesInFlight, func(ctx context.Context, keys []string, out []checkResult) {
			nodeGets(ctx, n.cc, node, keys, out)
		})
		n.m[node] = b
	}
	return b
}

// close closes every master's batcher. A nil n does nothing.
func (n *nodeBatchers) close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	n.closed = true
	bs := slices.Collect(maps.Values(n.m))
	n.mu.Unlock()
	for _, b := range bs {
		b.close()
	}
}

// nodeGets reads keys on the master node with a pipeline of GETs, and
// those that failed there again through cc.
func nodeGets(ctx context.Context, cc *redis.ClusterClient, node *redis.Client, keys []string, out []checkResult) {
	pipelinedGets(ctx, node, keys, out)
	var again []string
	var idx []int
	for i, r := range out {
		if r.err != nil {
			again = append(again, keys[i])
			idx = append(idx, i)
		}
	}
	if len(again) == 0 {
		return
	}
	res := make([]checkResult, len(again))
	pipelinedGets(ctx, cc, again, res)
	for n, i := range idx {
		out[i] = res[n]
	}
}
