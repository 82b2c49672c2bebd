package mpauthx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis replicates asynchronously: a write the primary has acknowledged
// may not have reached any replica when the primary dies, and the replica
// promoted in its place then lacks it. For a login that costs a re-login;
// for a revocation it would bring a token back to life. So RevokeToken
// and RefreshToken (whose new session ends the old token) wait, once
// their script has changed something, for one replica to acknowledge the
// change: WAIT 1 on the connection that ran the script, bounded by
// replicaAckTimeout and by the call's ctx. Whether the primary has a
// replica to wait for is read from ROLE, sent in the same round trip as
// the script, so that a Redis without replicas pays one small reply and
// is never made to wait. docs/operations.md ("Failover") says what this costs.

// replicaMemory is how long after a Client last saw its primary list a
// replica it still waits for one: a primary that has just lost its
// replicas is most likely the old one of a failover, which the replica
// promoted in its place has left, and whose writes are lost when it
// becomes that replica's replica in turn (Sentinel demotes it as soon as
// it sees it, which may take 10 s). A minute is Redis's default
// repl-timeout, after which a primary drops a silent replica.
const replicaMemory = time.Minute

// replicaAckTimeout bounds the wait for a replica's acknowledgement:
// thousands of times what a healthy replica takes (0.2 to 0.4 ms on
// loopback, see docs/operations.md), and short enough that a stuck
// replica costs a revocation one second, not a request timeout. A replica that stays silent is dropped by its primary after
// repl-timeout (60 s by default); from then on ROLE no longer lists it
// and revocations stop waiting for it.
const replicaAckTimeout = time.Second

// errNotReplicated is the cause of the 6000 of a RevokeToken or
// RefreshToken whose change no replica acknowledged in time.
var errNotReplicated = errors.New("mpauthx: the change is made on the Redis primary, but none of its replicas acknowledged it in time: a failover now could undo it")

// runReplicated runs script on keys with args and returns its reply. When
// the primary that ran it has a replica online, or had one less than
// replicaMemory ago as far as c saw (on a Cluster, that master itself), it
// then waits for one replica to acknowledge the change; when wrote says
// the script changed nothing (nil: it always changes something), it
// first writes a fence key in keys[0]'s slot, so that the wait covers
// whatever write made the script's change unneeded. It fails with
// errNotReplicated when no replica acknowledges within replicaAckTimeout
// (or the ctx's deadline, if sooner).
//
// On a *redis.Client (also a Sentinel failover client) the script, ROLE
// and WAIT go down one connection taken from the client's pool; on a
// *redis.ClusterClient, down one connection to the master of keys[0]'s
// slot. When that master answers MOVED (the ClusterClient's slot map is
// stale, as right after a failover), the map is reloaded and the master
// it names then is used the same way; only when that one redirects too,
// or answers ASK (the slot is being migrated), does the script run
// through the ClusterClient without waiting. A *redis.Ring has no
// replicas to wait for.
func (c *Client) runReplicated(ctx context.Context, script *redis.Script, wrote func(*redis.Cmd) bool, keys []string, args ...any) (*redis.Cmd, error) {
	switch r := c.rdb.(type) {
	case *redis.Client:
		return c.runOn(ctx, ownConn(r), "", script, wrote, keys, args)
	case *redis.ClusterClient:
		for reloaded := false; ; reloaded = true {
			node, err := r.MasterForKey(ctx, keys[0])
			if err != nil {
				return nil, err
			}
			cmd, err := c.runOn(ctx, ownConn(node), node.Options().Addr, script, wrote, keys, args)
			switch {
			case redis.HasErrorPrefix(err, "MOVED") && !reloaded:
				// The ClusterClient's slot map is stale: a failover
				// made the master a replica, or the slot moved. Reload
				// it (ForEachMaster reloads before it iterates) and run
				// on the master it names now, waiting for its replica.
				if err := r.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil }); err != nil {
					return nil, err
				}
				continue
			case redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK"):
				cmd = script.Run(ctx, c.rdb, keys, args...)
				return cmd, cmd.Err()
			}
			return cmd, err
		}
	default:
		cmd := script.Run(ctx, c.rdb, keys, args...)
		return cmd, cmd.Err()
	}
}

// runOn is runReplicated on conn, a connection to the primary known in
// c.replicas as primary; it closes conn.
func (c *Client) runOn(ctx context.Context, conn *redis.Conn, primary string, script *redis.Script, wrote func(*redis.Cmd) bool, keys []string, args []any) (*redis.Cmd, error) {
	defer conn.Close()
	cmd, replicas, err := runWithRole(ctx, conn, script, keys, args)
	if err != nil {
		return cmd, err
	}
	if replicas > 0 {
		c.replicas.saw(primary)
	} else if !c.replicas.recently(primary) {
		return cmd, nil
	}
	if wrote != nil && !wrote(cmd) {
		// Nothing changed here, but what made it so (this token's
		// earlier revocation that failed to replicate and is being
		// retried, a concurrent logout) may not have reached a replica
		// yet, and WAIT only covers this connection's own writes: one
		// write of ours, after it in the replication stream, makes WAIT
		// cover it too. The key shares keys[0]'s slot and expires at once.
		err := conn.Set(ctx, keys[0]+":fence", "", time.Millisecond).Err()
		if redis.HasErrorPrefix(err, "MOVED") {
			return cmd, nil // a Cluster key without a hash tag: another slot
		}
		if err != nil {
			return cmd, err
		}
	}
	acked, err := conn.Wait(ctx, 1, ackTimeout(ctx)).Result()
	if err == nil && acked < 1 {
		err = errNotReplicated
	}
	return cmd, err
}

// ownConn returns a connection of rdb's pool for a sequence of commands,
// taken through a clone of rdb (WithTimeout, with rdb's own timeouts) so
// that it has options of its own: go-redis writes to the options of the
// client a connection is first set up through (when Redis refuses its
// maintenance-notifications handshake), and Conns of one client share
// them without a common lock.
func ownConn(rdb *redis.Client) *redis.Conn {
	return rdb.WithTimeout(rdb.Options().ReadTimeout).Conn()
}

// runWithRole sends script (EVALSHA, then EVAL if Redis does not have it
// cached) and ROLE in one pipeline on conn, and returns the script's
// reply and the number of replicas ROLE lists: those online, which WAIT
// counts. A Redis that refuses ROLE (an ACL without it, a proxy, a
// miniredis) counts as one without replicas.
func runWithRole(ctx context.Context, conn *redis.Conn, script *redis.Script, keys []string, args []any) (*redis.Cmd, int, error) {
	var cmd, role *redis.Cmd
	send := func(eval bool) {
		_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error { // each command keeps its own error
			if eval {
				cmd = script.Eval(ctx, p, keys, args...)
			} else {
				cmd = script.EvalSha(ctx, p, keys, args...)
			}
			role = p.Do(ctx, "role")
			return nil
		})
	}
	send(false)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		send(true)
	}
	if err := cmd.Err(); err != nil {
		return cmd, 0, err
	}
	r, err := role.Slice()
	if err != nil || len(r) < 3 || r[0] != "master" {
		return cmd, 0, nil
	}
	replicas, _ := r[2].([]any)
	return cmd, len(replicas), nil
}

// ackTimeout is the WAIT timeout for a call with ctx: replicaAckTimeout,
// or less when ctx's deadline comes first, but never 0 (which WAIT reads
// as forever).
func ackTimeout(ctx context.Context) time.Duration {
	d := replicaAckTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return max(d, time.Millisecond)
}

// revoked reports whether revokeScript's reply says it deleted the token.
func revoked(cmd *redis.Cmd) bool {
	n, err := cmd.Int64()
	return err == nil && n != 0
}

// replicaWatch remembers when a Client last saw a primary list a
// replica: the primary of a *redis.Client (one at a time, also through
// Sentinel: the new primary of a failover is remembered as the old one
// was) under "", and each master of a Cluster under its address, since
// one master having replicas says nothing of another. The zero value has
// seen none.
type replicaWatch struct {
	last    atomic.Int64 // Unix nanoseconds for ""; 0: never
	masters sync.Map     // Cluster master address -> *atomic.Int64, as last
}

// at returns the time of primary, nil when none was ever stored and
// create is false.
func (w *replicaWatch) at(primary string, create bool) *atomic.Int64 {
	if primary == "" {
		return &w.last
	}
	if v, ok := w.masters.Load(primary); ok {
		return v.(*atomic.Int64)
	}
	if !create {
		return nil
	}
	v, _ := w.masters.LoadOrStore(primary, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// saw records that primary lists a replica now.
func (w *replicaWatch) saw(primary string) { w.at(primary, true).Store(time.Now().UnixNano()) }

// recently reports whether primary listed a replica less than
// replicaMemory ago.
func (w *replicaWatch) recently(primary string) bool {
	t := w.at(primary, false)
	if t == nil {
		return false
	}
	last := t.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < replicaMemory
}
