package mpauthx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// fakeFetch stands in for Redis behind a checkBatcher: each batch it is
// given shows up on batches and waits for release. A key answers
// "v:"+key, a key starting with "absent" is absent, and a batch holding
// "fail" fails as a whole.
type fakeFetch struct {
	batches chan fetched
	quit    chan struct{} // closed at the test's end: every batch answers
}

// fetched is one batch: its keys, and release to let it answer.
type fetched struct {
	keys    []string
	release chan struct{}
}

// newFakeBatcher returns a batcher whose batches go to a fakeFetch
// instead of Redis (a miniredis serves only lone reads whose ctx cannot
// end, which these tests do not make).
func newFakeBatcher(t *testing.T) (*checkBatcher, *fakeFetch) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	f := &fakeFetch{batches: make(chan fetched, 16), quit: make(chan struct{})}
	b := newCheckBatcher(rdb)
	b.fetch = f.fetch // before any get: the workers read it after a channel receive
	t.Cleanup(b.close)
	t.Cleanup(func() { close(f.quit) }) // first: a failed test leaves no batch hanging
	return b, f
}

// fetch is the batcher's fetch: it shows the batch on f.batches, waits
// for its release (or the test's end) and answers by fakeFetch's rules.
func (f *fakeFetch) fetch(_ context.Context, keys []string, out []checkResult) {
	b := fetched{keys: append([]string(nil), keys...), release: make(chan struct{})}
	select {
	case f.batches <- b:
	case <-f.quit:
		return
	}
	select {
	case <-b.release:
	case <-f.quit:
	}
	for _, k := range keys {
		if k == "fail" {
			for i := range out {
				out[i] = checkResult{err: errors.New("batch failed")}
			}
			return
		}
	}
	for i, k := range keys {
		if strings.HasPrefix(k, "absent") {
			out[i] = checkResult{}
		} else {
			out[i] = checkResult{val: "v:" + k, found: true}
		}
	}
}

// next returns the next batch sent to Redis.
func (f *fakeFetch) next(t *testing.T) fetched {
	t.Helper()
	return within(t, f.batches, "no batch was sent")
}

// within returns the next value on ch, failing t with what if none comes
// within 10 s.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal(what)
		var zero T
		return zero
	}
}

// eventually reports whether cond held within 10 s, polling it every
// millisecond.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// none fails if a batch was sent.
func (f *fakeFetch) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-f.batches:
		t.Fatalf("a batch of %d was sent: %q", len(b.keys), b.keys)
	default:
	}
}

// state returns the batcher's queue length and batches in flight.
func (b *checkBatcher) state() (queued, inFlight int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), b.inFlight
}

// waitQueued waits until n reads are queued.
func waitQueued(t *testing.T, b *checkBatcher, n int) {
	t.Helper()
	if !eventually(func() bool { q, _ := b.state(); return q == n }) {
		q, f := b.state()
		t.Fatalf("%d queued, %d in flight; want %d queued", q, f, n)
	}
}

// answer is what one get returned.
type answer struct {
	key   string
	val   string
	found bool
	err   error
}

// goGet starts a get of each key with ctx and sends its answer to out.
func goGet(ctx context.Context, b *checkBatcher, out chan<- answer, keys ...string) {
	for _, k := range keys {
		go func() {
			v, found, err := b.get(ctx, k)
			out <- answer{k, v, found, err}
		}()
	}
}

// collect receives n answers and checks each against fakeFetch's rules.
func collect(t *testing.T, out <-chan answer, n int) {
	t.Helper()
	for range n {
		a := within(t, out, "a get did not return")
		wantFound := !strings.HasPrefix(a.key, "absent")
		want := ""
		if wantFound {
			want = "v:" + a.key
		}
		if a.err != nil || a.found != wantFound || a.val != want {
			t.Errorf("get(%q) = %q, %v, %v; want %q, %v, nil", a.key, a.val, a.found, a.err, want, wantFound)
		}
	}
}

// keyRange returns prefix+i for i in [from, to).
func keyRange(prefix string, from, to int) []string {
	var ks []string
	for i := from; i < to; i++ {
		ks = append(ks, fmt.Sprintf("%s%d", prefix, i))
	}
	return ks
}

// TestCheckBatcherBatches walks the batching rule: a read leaves at once
// when nothing is in flight; with one batch in flight the next leaves
// when it is full; with two in flight nothing leaves; a worker that
// brings a batch back sends what is queued.
func TestCheckBatcherBatches(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background()) // a ctx that can end: no plain GET
	defer cancel()
	out := make(chan answer, 256)

	goGet(ctx, b, out, "k0")
	first := f.next(t)
	if len(first.keys) != 1 || first.keys[0] != "k0" {
		t.Fatalf("first batch %q; want [k0], sent at once", first.keys)
	}

	goGet(ctx, b, out, keyRange("k", 1, checkBatchFull)...)
	waitQueued(t, b, checkBatchFull-1)
	f.none(t) // one in flight and the queue not full: wait

	goGet(ctx, b, out, "absent-full")
	second := f.next(t)
	if len(second.keys) != checkBatchFull {
		t.Fatalf("second batch of %d; want %d, sent when full", len(second.keys), checkBatchFull)
	}

	goGet(ctx, b, out, keyRange("absent", 0, 40)...)
	waitQueued(t, b, 40)
	f.none(t) // two in flight: wait, however long the queue

	close(first.release)
	third := f.next(t) // the worker back from the first sends the queue
	if len(third.keys) != 40 {
		t.Fatalf("third batch of %d; want the 40 queued", len(third.keys))
	}
	collect(t, out, 1)

	close(second.release)
	collect(t, out, checkBatchFull)
	close(third.release)
	collect(t, out, 40)
	if q, n := b.state(); q != 0 || n != 0 {
		t.Errorf("%d queued, %d in flight after all answers; want 0, 0", q, n)
	}
}

// TestCheckBatcherLeftoverLeavesWhenIdle checks that a queue shorter than a
// full batch waits for the batch in flight, then leaves as soon as it is
// back, whatever its size.
func TestCheckBatcherLeftoverLeavesWhenIdle(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan answer, 16)
	goGet(ctx, b, out, "a")
	first := f.next(t)
	goGet(ctx, b, out, "b", "c", "absent")
	waitQueued(t, b, 3)
	f.none(t)
	close(first.release)
	second := f.next(t)
	if len(second.keys) != 3 {
		t.Fatalf("batch of %d after the first came back; want the 3 queued", len(second.keys))
	}
	close(second.release)
	collect(t, out, 4)
}

// TestCheckBatcherErrorGoesToItsBatch checks that a failed batch fails
// each of its callers and no other.
func TestCheckBatcherErrorGoesToItsBatch(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan answer, 64)
	goGet(ctx, b, out, "ok")
	first := f.next(t)
	goGet(ctx, b, out, append(keyRange("x", 0, checkBatchFull-1), "fail")...)
	second := f.next(t)
	close(second.release)
	for range checkBatchFull {
		a := within(t, out, "a get in the failed batch did not return")
		if a.err == nil || a.err.Error() != "batch failed" || a.found {
			t.Errorf("get(%q) in the failed batch = %q, %v, %v; want its error", a.key, a.val, a.found, a.err)
		}
	}
	close(first.release)
	collect(t, out, 1)
}

// TestCheckBatcherCallerLeavesWhenCtxEnds checks that a caller returns
// ctx's error as soon as its ctx ends, while its read is on the wire, and
// that the others in its batch still get their answers.
func TestCheckBatcherCallerLeavesWhenCtxEnds(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	short, stop := context.WithCancel(context.Background())
	out := make(chan answer, 4)
	left := make(chan answer, 1)
	goGet(ctx, b, out, "first")
	first := f.next(t)
	goGet(short, b, left, "leaver")
	goGet(ctx, b, out, "stayer")
	waitQueued(t, b, 2)
	close(first.release)
	second := f.next(t)
	stop()
	if a := within(t, left, "a get whose ctx ended did not return"); !errors.Is(a.err, context.Canceled) || a.found {
		t.Errorf("get with an ended ctx = %q, %v, %v; want context.Canceled", a.val, a.found, a.err)
	}
	close(second.release)
	collect(t, out, 2)

	// A ctx that ended before the call: no read at all.
	if _, _, err := b.get(short, "late"); !errors.Is(err, context.Canceled) {
		t.Errorf("get with a ctx ended beforehand: %v; want context.Canceled", err)
	}
	f.none(t)
}

// TestCheckBatcherSkipsLeftReads checks that the reads of callers who
// left before their batch was sent are not sent: a batch of them only
// costs the worker a turn.
func TestCheckBatcherSkipsLeftReads(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan answer, 8)
	goGet(ctx, b, out, "first")
	first := f.next(t)

	short, stop := context.WithCancel(context.Background())
	left := make(chan answer, 3)
	goGet(short, b, left, "gone1", "gone2", "gone3")
	waitQueued(t, b, 3)
	stop()
	for range 3 {
		if a := within(t, left, "a get whose ctx ended did not return"); !errors.Is(a.err, context.Canceled) {
			t.Fatalf("get(%q) = %v; want context.Canceled", a.key, a.err)
		}
	}
	close(first.release)
	collect(t, out, 1)
	if !eventually(func() bool { q, n := b.state(); return q == 0 && n == 0 }) {
		t.Fatal("the batch of reads whose callers left never came back")
	}
	f.none(t) // none of them was sent

	goGet(ctx, b, out, "next")
	next := f.next(t)
	if len(next.keys) != 1 || next.keys[0] != "next" {
		t.Fatalf("batch %q; want [next]", next.keys)
	}
	close(next.release)
	collect(t, out, 1)
}

// TestCheckBatcherQueueLimit checks that a read finding maxQueued others
// waiting fails at once, and that the waiting ones are still answered.
func TestCheckBatcherQueueLimit(t *testing.T) {
	b, f := newFakeBatcher(t)
	b.maxQueued = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan answer, 8)
	goGet(ctx, b, out, "first")
	first := f.next(t)
	goGet(ctx, b, out, "a", "b", "c")
	waitQueued(t, b, 3)
	if _, _, err := b.get(ctx, "one too many"); !errors.Is(err, errCheckQueueFull) {
		t.Fatalf("get with a full queue: %v; want errCheckQueueFull", err)
	}
	close(first.release)
	second := f.next(t)
	close(second.release)
	collect(t, out, 4)
	goGet(ctx, b, out, "after") // the queue has room again
	close(f.next(t).release)
	collect(t, out, 1)
}

// TestCheckBatcherBatchMax checks that a batch holds at most checkBatchMax
// reads, the rest leaving in the next one.
func TestCheckBatcherBatchMax(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const queued = checkBatchMax + 88
	out := make(chan answer, queued+checkBatchFull+1)
	goGet(ctx, b, out, "first")
	first := f.next(t)
	goGet(ctx, b, out, keyRange("full", 0, checkBatchFull)...)
	second := f.next(t)
	goGet(ctx, b, out, keyRange("k", 0, queued)...)
	waitQueued(t, b, queued)
	close(first.release)
	if third := f.next(t); len(third.keys) != checkBatchMax {
		t.Fatalf("batch of %d from a queue of %d; want %d", len(third.keys), queued, checkBatchMax)
	} else {
		close(third.release)
	}
	close(second.release)
	if fourth := f.next(t); len(fourth.keys) != queued-checkBatchMax {
		t.Fatalf("batch of %d; want the %d left", len(fourth.keys), queued-checkBatchMax)
	} else {
		close(fourth.release)
	}
	collect(t, out, 1+checkBatchFull+queued)
}

// TestCheckBatcherStress runs many callers with random deadlines, many of
// which give up mid-batch, on miniredis, then closes the batcher: every
// answer that arrives is right, nothing hangs, and (under -race) the
// recycled requests are not shared.
func TestCheckBatcherStress(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	for i := range 50 {
		mr.Set(fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	b := newCheckBatcher(rdb)
	var (
		wg       sync.WaitGroup
		answered atomic.Int64 // gets with a generous ctx that were answered
	)
	for g := range 100 {
		wg.Go(func() {
			for i := range 100 {
				k := (g + i) % 60 // keys 50..59 are absent
				// Most ctxs end within 300 µs, mid-batch; every tenth is
				// generous and must be answered whatever the scheduling.
				timeout, generous := time.Duration(rand.N(300))*time.Microsecond, i%10 == 0
				if generous {
					timeout = time.Minute
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				v, found, err := b.get(ctx, fmt.Sprint("k", k))
				cancel()
				if generous && err == nil {
					answered.Add(1)
				}
				switch {
				case errors.Is(err, context.DeadlineExceeded) && !generous:
				case err != nil:
					t.Errorf("get: %v", err)
				case found != (k < 50) || (found && v != fmt.Sprint("v", k)):
					t.Errorf("get(k%d) = %q, %v", k, v, found)
				}
			}
		})
	}
	wg.Wait()
	if n := answered.Load(); n != 100*10 {
		t.Errorf("%d of the %d gets with a generous ctx were answered", n, 100*10)
	}
	done := make(chan struct{})
	go func() { b.close(); close(done) }()
	within(t, done, "close did not return")
}

// TestPipelinedGetsNodeDown checks that on a Ring with a shard down the
// reads of that shard fail and the others are answered.
func TestPipelinedGetsNodeDown(t *testing.T) {
	up, down := miniredis.RunT(t), miniredis.RunT(t)
	ring := redis.NewRing(&redis.RingOptions{
		Addrs:              map[string]string{"up": up.Addr(), "down": down.Addr()},
		HeartbeatFrequency: time.Hour, // keep both shards in the ring
		MaxRetries:         -1,
	})
	defer ring.Close()
	ctx := context.Background()
	keys := keyRange("k", 0, 40)
	for _, k := range keys {
		if err := ring.Set(ctx, k, "v"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	down.Close()
	out := make([]checkResult, len(keys))
	pipelinedGets(ctx, ring, keys, out)
	var ok, failed int
	for i, r := range out {
		switch {
		case r.err != nil && !r.found:
			failed++
		case r.err == nil && r.found && r.val == "v"+keys[i] && up.Exists(keys[i]):
			ok++
		default:
			t.Errorf("%s: %+v", keys[i], r)
		}
	}
	if ok == 0 || failed == 0 || ok+failed != len(keys) {
		t.Errorf("%d answered, %d failed of %d; want some of each", ok, failed, len(keys))
	}
}

// TestCheckBatcherClose checks that close fails the queued reads at
// once, waits for the batch in flight, refuses new reads, stops the
// workers and can be called again.
func TestCheckBatcherClose(t *testing.T) {
	b, f := newFakeBatcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan answer, 8)
	goGet(ctx, b, out, "a")
	first := f.next(t)
	goGet(ctx, b, out, "b", "c")
	waitQueued(t, b, 2)

	closed := make(chan struct{})
	go func() { b.close(); close(closed) }()
	if !eventually(func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.closed }) {
		t.Fatal("close did not mark the batcher closed")
	}
	for range 2 { // b and c: failed by close, not sent
		if a := within(t, out, "close did not fail the queued reads"); !errors.Is(a.err, errBatcherClosed) {
			t.Errorf("queued get(%q) at close = %q, %v, %v; want errBatcherClosed", a.key, a.val, a.found, a.err)
		}
	}
	if _, _, err := b.get(ctx, "after"); !errors.Is(err, errBatcherClosed) {
		t.Errorf("get after close: %v; want errBatcherClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("close returned with a batch in flight")
	default:
	}
	close(first.release)
	collect(t, out, 1) // a, in flight at close
	f.none(t)
	within(t, closed, "close did not return once the batches were back")
	b.close() // again: returns at once
	var nilBatcher *checkBatcher
	nilBatcher.close()
}

// TestCheckBatcherManyCallers runs many concurrent gets on miniredis and
// checks every answer, and that they shared round trips.
func TestCheckBatcherManyCallers(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	var mu sync.Mutex
	mgets, reads := 0, 0
	rdb.AddHook(countHook(func(cmd redis.Cmder) {
		if cmd.Name() == "mget" {
			mu.Lock()
			mgets++
			reads += len(cmd.Args()) - 1
			mu.Unlock()
		}
	}))
	const goroutines, each = 64, 50
	for i := range goroutines {
		if i%3 != 0 {
			mr.Set(fmt.Sprint("k", i), fmt.Sprint("v", i))
		}
	}
	mr.HSet("k3", "field", "a hash, not a string") // reads as absent, like a missing key
	b := newCheckBatcher(rdb)
	defer b.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				v, found, err := b.get(ctx, fmt.Sprint("k", g))
				if wantFound := g%3 != 0; err != nil || found != wantFound || (found && v != fmt.Sprint("v", g)) {
					t.Errorf("get(k%d) = %q, %v, %v; want found %v", g, v, found, err, wantFound)
					return
				}
			}
		})
	}
	wg.Wait()
	if reads != goroutines*each {
		t.Errorf("%d keys read by MGET; want %d", reads, goroutines*each)
	}
	// How many reads share an MGET depends on the scheduling:
	// TestCheckBatcherBatches pins the batching rule, and
	// BenchmarkIsTokenValid measures the round trips.
	t.Logf("%d reads in %d MGETs", reads, mgets)
}

// countHook calls f for each command the client processes.
type countHook func(redis.Cmder)

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(cmd)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h(cmd)
		}
		return next(ctx, cmds)
	}
}

// testCluster returns a client of the Redis Cluster at
// MPAUTHX_REDIS_CLUSTER, closed when t ends, or skips t.
func testCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	seeds := os.Getenv("MPAUTHX_REDIS_CLUSTER")
	if seeds == "" {
		t.Skip("MPAUTHX_REDIS_CLUSTER is not set: it holds the seed addresses of a Redis Cluster (.ci/services/20-redis-cluster.sh starts one)")
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(seeds, ",")})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// clusterKeys writes n keys of a made-up Sku spread over the Cluster's
// slots, each holding "v:"+key (every third is left absent), deleted when
// t ends.
func clusterKeys(t *testing.T, cc *redis.ClusterClient, n int) []string {
	t.Helper()
	ctx := context.Background()
	sku := fmt.Sprintf("batch-%d", rand.Int64())
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("mpauthx:{u%d|%s}:session", i, sku)
		if i%3 != 0 {
			if err := cc.Set(ctx, keys[i], "v:"+keys[i], time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		for _, k := range keys {
			cc.Del(context.Background(), k)
		}
	})
	return keys
}

// TestClusterChecksBatchedPerMaster checks that on a Redis Cluster
// concurrent reads are sent to each master as pipelines of GETs of its
// own keys only, never as a pipeline of the whole Cluster that go-redis
// splits by node, and that every read gets its own answer.
func TestClusterChecksBatchedPerMaster(t *testing.T) {
	cc := testCluster(t)
	var mu sync.Mutex
	var clusterPipelines, nodePipelines, nodeGETs int
	wrongNode := map[string]string{}
	cc.AddHook(pipelineHook(func(cmds []redis.Cmder) {
		mu.Lock()
		clusterPipelines++
		mu.Unlock()
	}))
	cc.OnNewNode(func(node *redis.Client) {
		addr := node.Options().Addr
		node.AddHook(pipelineHook(func(cmds []redis.Cmder) {
			ctx := context.Background()
			mu.Lock()
			defer mu.Unlock()
			nodePipelines++
			for _, cmd := range cmds {
				if cmd.Name() != "get" {
					continue
				}
				nodeGETs++
				key := cmd.Args()[1].(string)
				if m, err := cc.MasterForKey(ctx, key); err != nil || m.Options().Addr != addr {
					wrongNode[key] = addr
				}
			}
		}))
	})
	keys := clusterKeys(t, cc, 300)
	b := newCheckBatcher(cc)
	defer b.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < 64*20; i += 64 {
				k := keys[i%len(keys)]
				v, found, err := b.get(ctx, k)
				if want := i%len(keys)%3 != 0; err != nil || found != want || (found && v != "v:"+k) {
					t.Errorf("get(%s) = %q, %v, %v; want found %v", k, v, found, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if clusterPipelines != 0 {
		t.Errorf("%d pipelines went through the ClusterClient; want every read sent to its master", clusterPipelines)
	}
	if len(wrongNode) > 0 {
		t.Errorf("keys read on a node that is not their master: %v", wrongNode)
	}
	if nodeGETs != 64*20 || nodePipelines == 0 {
		t.Errorf("%d GETs in %d pipelines to the masters; want %d GETs", nodeGETs, nodePipelines, 64*20)
	}
	t.Logf("%d reads in %d pipelines to the masters (%.1f a pipeline)", nodeGETs, nodePipelines, float64(nodeGETs)/float64(nodePipelines))
}

// TestClusterNodeGetsRedirected checks that reads sent to a node that is
// not their master (a slot that has moved since go-redis last mapped it)
// are answered all the same, through the ClusterClient.
func TestClusterNodeGetsRedirected(t *testing.T) {
	cc := testCluster(t)
	ctx := context.Background()
	keys := clusterKeys(t, cc, 30)
	var moved []string
	master0, err := cc.MasterForKey(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if m, _ := cc.MasterForKey(ctx, k); m != master0 {
			moved = append(moved, k)
		}
	}
	if len(moved) == 0 {
		t.Fatal("every key is on one master")
	}
	out := make([]checkResult, len(moved))
	nodeGets(ctx, cc, master0, moved, out) // the master of keys[0], which holds none of moved
	for i, k := range moved {
		want := ""
		if slices.Index(keys, k)%3 != 0 {
			want = "v:" + k
		}
		if r := out[i]; r.err != nil || r.found != (want != "") || r.val != want {
			t.Errorf("%s read on another master: %+v; want %q", k, r, want)
		}
	}
}

// pipelineHook calls f for each pipeline the client sends.
type pipelineHook func([]redis.Cmder)

func (h pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h(cmds)
		return next(ctx, cmds)
	}
}

// TestClusterChecksHungMaster checks that a master that does not answer
// (CLIENT PAUSE) holds up the checks of its own keys only: those of the
// other masters are answered at once, as each master's reads are batched
// on their own.
func TestClusterChecksHungMaster(t *testing.T) {
	cc := testCluster(t)
	keys := clusterKeys(t, cc, 60)
	ctx := context.Background()
	hung, err := cc.MasterForKey(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var mine, others []string
	for _, k := range keys {
		if m, _ := cc.MasterForKey(ctx, k); m == hung {
			mine = append(mine, k)
		} else {
			others = append(others, k)
		}
	}
	b := newCheckBatcher(cc)
	defer b.close()
	const pause = 3 * time.Second
	if err := hung.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	defer hung.Do(ctx, "CLIENT", "UNPAUSE")
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Checks of the hung master's keys keep a batch of its own on the
	// wire; checks of the others, made meanwhile, must not wait for it.
	for _, k := range mine {
		go b.get(reqCtx, k)
	}
	time.Sleep(50 * time.Millisecond)
	begin := time.Now()
	var wg sync.WaitGroup
	for _, k := range others {
		wg.Go(func() {
			if _, _, err := b.get(reqCtx, k); err != nil {
				t.Errorf("get(%s): %v", k, err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(begin); took > pause/3 {
		t.Errorf("the checks of the other masters took %v while one master was paused for %v; want them answered at once", took, pause)
	}
}
