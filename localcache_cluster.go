package mpauthx

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The local cache on a Redis Cluster (a *redis.ClusterClient). Each master
// announces only the writes it executes, so the cache keeps a link to
// every master, and the lease is the earliest of
//
//   - each master's link: until cacheLease after the send of its last PING
//     whose PONG came back (what that master executed before the PING has
//     been heard of), and
//   - the topology: until cacheLease after the send of the last poll in
//     which every node (masters and replicas) answered CLUSTER NODES with
//     the view it gave when the links were planned.
//
// Any change of any node's view (a failover, a slot migrating or moved, a
// node added, gone or failing), a MOVED or ASK reply to the cache's own
// reads, or a link error flushes the cache; the links are planned again
// from the new views (a link to every node that any view makes a master
// of some slot), and the cache answers again once each new link and a new
// poll vouch for it. A node's view changes before it executes a write for
// a slot it did not serve, so a write on a master without a link is found
// by the first poll sent after it: within cacheLease, as on one server.
type clusterWatch struct {
	lc   *localCache
	cc   *redis.ClusterClient
	base *redis.Options // a node client's options: Addr is set per node
	topo *leasePart

	nodes map[string]*clusterNode // by address; only run's goroutine changes it
	plan  atomic.Pointer[clusterPlan]
	stale atomic.Bool // a MOVED or ASK reply: plan again
	done  chan struct{}
}

// clusterNode is a node the watch polls, and, for a master, its link.
type clusterNode struct {
	addr  string
	probe *redis.Client // CLUSTER NODES, and the PTTLs of the master's keys
	view  string        // its CLUSTER NODES when the links were planned, canonical
	link  *cacheLink    // masters only
	part  *leasePart    // the link's share of the lease
}

// clusterPlan says which master serves each slot, as the views said when
// the links were planned: the fills read each key's PTTL there.
type clusterPlan struct {
	owner  [clusterSlots]int32 // index into probes; -1: no master
	probes []*redis.Client
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterProbeName names the watch's connections in CLIENT LIST.
const clusterProbeName = "mpauthx-localcache-probe"

// startCluster starts the cache on the Cluster of cc.
func (lc *localCache) startCluster(cc *redis.ClusterClient) {
	w := &clusterWatch{lc: lc, cc: cc, nodes: map[string]*clusterNode{}, done: make(chan struct{})}
	w.topo = lc.addPart()
	lc.fill = w.fill
	lc.stop = w.close
	lc.wg.Add(1)
	go w.run()
}

// close stops the watch, then its links and probes.
func (w *clusterWatch) close() error {
	<-w.done
	var errs []error
	for _, n := range w.nodes {
		errs = append(errs, w.drop(n))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// run polls the nodes and PINGs the links every cacheHeartbeat until the
// cache stops, and plans the links again whenever a view changed.
func (w *clusterWatch) run() {
	defer w.lc.wg.Done()
	defer close(w.done)
	t := time.NewTicker(cacheHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-w.lc.ctx.Done():
			return
		case <-t.C:
		}
		if w.base == nil && !w.start() {
			continue
		}
		for _, n := range w.nodes {
			if n.link != nil {
				n.link.ping()
			}
		}
		epoch := w.lc.epoch.Load()
		sent := w.lc.now()
		views, errs := w.poll()
		changed, vouched := w.stale.Swap(false), len(w.nodes) > 0
		for addr, n := range w.nodes {
			switch {
			case errs[addr] != nil:
				if noPermission(errs[addr]) {
					w.lc.off("Redis does not let mpauthx read the Cluster's topology (CLUSTER NODES)", errs[addr])
					return
				}
				// A replica out of reach serves no writes; a master's link
				// fails too.
				vouched = vouched && n.link == nil
			case views[addr] != n.view:
				changed = true
			}
		}
		if changed {
			w.lc.flush()
			w.replan(views)
			continue
		}
		if vouched {
			w.lc.renew(w.topo, sent+int64(cacheLease), epoch)
		}
	}
}

// start takes the options of the Cluster's nodes from one of cc's node
// clients, and adds cc's seed addresses as the first nodes to poll (whose
// views then plan the links); it reports whether it could.
func (w *clusterWatch) start() bool {
	ctx, cancel := context.WithTimeout(w.lc.ctx, cacheFillTimeout)
	defer cancel()
	var once sync.Once
	_ = w.cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		once.Do(func() { o := *c.Options(); w.base = &o })
		return nil
	})
	if w.base == nil {
		return false
	}
	for _, addr := range w.cc.Options().Addrs {
		w.node(addr)
	}
	return true
}

// node returns the node at addr, with its probe, adding it if need be.
func (w *clusterWatch) node(addr string) *clusterNode {
	if n := w.nodes[addr]; n != nil {
		return n
	}
	opt := *w.base
	opt.Addr = addr
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns, opt.MaxActiveConns = 2, 0, 0, 0
	opt.ClientName = clusterProbeName
	opt.MaxRetries = -1
	ownOptions(&opt)
	n := &clusterNode{addr: addr, probe: redis.NewClient(&opt)}
	w.nodes[addr] = n
	return n
}

// drop closes n's link and probe.
func (w *clusterWatch) drop(n *clusterNode) error {
	var err error
	if n.link != nil {
		err = n.link.close()
		w.lc.dropPart(n.part)
		n.link, n.part = nil, nil
	}
	if e := n.probe.Close(); err == nil {
		err = e
	}
	return err
}

// poll asks every node for its view, concurrently, and returns the views
// (canonical) and the errors by address.
func (w *clusterWatch) poll() (views map[string]string, errs map[string]error) {
	ctx, cancel := context.WithTimeout(w.lc.ctx, cacheFillTimeout)
	defer cancel()
	views, errs = make(map[string]string, len(w.nodes)), make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, n := range w.nodes {
		wg.Go(func() {
			s, err := n.probe.ClusterNodes(ctx).Result()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[addr] = err
				return
			}
			views[addr] = canonicalView(s)
		})
	}
	wg.Wait()
	return views, errs
}

// replan makes the nodes and links what views say: a probe for every node
// any view names, a link for every node that any view makes the master of
// a slot, and each slot served by the master whose claim has the highest
// config epoch. The views become the ones later polls must give again.
// The caller flushed the cache.
func (w *clusterWatch) replan(views map[string]string) {
	type claim struct {
		epoch int64
		addr  string
	}
	var slots [clusterSlots]claim
	seen, masters := map[string]bool{}, map[string]bool{}
	for _, v := range views {
		for _, n := range parseView(v) {
			seen[n.addr] = true
			if len(n.slots) == 0 {
				continue
			}
			masters[n.addr] = true
			for _, r := range n.slots {
				for s := r[0]; s <= r[1]; s++ {
					if c := &slots[s]; c.addr == "" || n.epoch > c.epoch {
						*c = claim{n.epoch, n.addr}
					}
				}
			}
		}
	}
	for addr, n := range w.nodes {
		if !seen[addr] && len(seen) > 0 {
			_ = w.drop(n)
			delete(w.nodes, addr)
		}
	}
	plan := &clusterPlan{}
	index := map[string]int32{}
	for addr := range seen {
		n := w.node(addr)
		n.view = views[addr] // "" when not polled yet: the next poll differs, and plans again
		switch {
		case masters[addr] && n.link == nil:
			n.part = w.lc.addPart()
			n.link = w.lc.newCacheLink(*n.probe.Options(), []string{invalidateChan})
			part := n.part
			n.link.onPong = func(_ *cacheLink, sent int64, epoch uint64) {
				w.lc.renew(part, sent+int64(cacheLease), epoch)
			}
			n.link.start()
		case !masters[addr] && n.link != nil:
			_ = n.link.close()
			w.lc.dropPart(n.part)
			n.link, n.part = nil, nil
		}
		if masters[addr] {
			index[addr] = int32(len(plan.probes))
			plan.probes = append(plan.probes, n.probe)
		}
	}
	for s := range plan.owner {
		plan.owner[s] = -1
		if i, ok := index[slots[s].addr]; ok {
			plan.owner[s] = i
		}
	}
	w.plan.Store(plan)
}

// fill reads the PTTLs of batch's keys from the masters the plan says
// serve them, one pipeline per master. A MOVED or ASK reply means the
// plan is behind the Cluster: the cache is flushed and planned again.
func (w *clusterWatch) fill(ctx context.Context, batch []cacheFill) []time.Duration {
	ttls := make([]time.Duration, len(batch))
	plan := w.plan.Load()
	if plan == nil {
		return ttls
	}
	byNode := make(map[int32][]int)
	for i, f := range batch {
		if o := plan.owner[keySlot(f.key)]; o >= 0 {
			byNode[o] = append(byNode[o], i)
		}
	}
	var wg sync.WaitGroup
	for o, idx := range byNode {
		wg.Go(func() {
			cmds := make([]*redis.DurationCmd, len(idx))
			_, _ = plan.probes[o].Pipelined(ctx, func(p redis.Pipeliner) error {
				for j, i := range idx {
					cmds[j] = p.PTTL(ctx, batch[i].key)
				}
				return nil
			})
			for j, i := range idx {
				ttl, err := cmds[j].Result()
				if err == nil {
					ttls[i] = ttl // each goroutine writes its own indexes
				} else if msg := err.Error(); strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") {
					w.stale.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if w.stale.Load() {
		w.lc.flush()
		return make([]time.Duration, len(batch))
	}
	return ttls
}

// viewNode is a node as one line of CLUSTER NODES describes it.
type viewNode struct {
	addr  string
	epoch int64
	slots [][2]int // ranges served, migrations excluded
}

// parseView reads the nodes of a canonical view.
func parseView(v string) []viewNode {
	var nodes []viewNode
	for line := range strings.Lines(v) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		flags := "," + f[2] + ","
		if strings.Contains(flags, ",noaddr,") || strings.Contains(flags, ",handshake,") {
			continue
		}
		n := viewNode{addr: nodeAddr(f[1])}
		n.epoch, _ = strconv.ParseInt(f[4], 10, 64)
		if strings.Contains(flags, ",master,") {
			for _, s := range f[5:] {
				if strings.HasPrefix(s, "[") {
					continue
				}
				lo, hi, ok := strings.Cut(s, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && 0 <= a && a <= b && b < clusterSlots {
					n.slots = append(n.slots, [2]int{a, b})
				}
			}
		}
		if n.addr != "" {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// nodeAddr returns the host:port of CLUSTER NODES' address field
// ("host:port@cport[,hostname]"); "" for a node without one.
func nodeAddr(field string) string {
	addr, _, _ := strings.Cut(field, "@")
	addr, _, _ = strings.Cut(addr, ",")
	if addr == "" || strings.HasPrefix(addr, ":") {
		return ""
	}
	return addr
}

// canonicalView keeps, of CLUSTER NODES' reply, what says who serves
// what: each node's ID, address, flags (but "myself"), master, config
// epoch and slots (migrations included), sorted; not the times of its
// pings nor the state of the links, which change all the time.
func canonicalView(s string) string {
	var lines []string
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		flags := strings.ReplaceAll(strings.ReplaceAll(f[2], "myself,", ""), ",myself", "")
		keep := append([]string{f[0], f[1], flags, f[3], f[6]}, f[8:]...)
		lines = append(lines, strings.Join(keep, " ")+"\n")
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// keySlot returns the hash slot of a Redis key: CRC16 (XMODEM) of its
// hash tag, the part between the first '{' and the next '}' when not
// empty, else of the whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}
