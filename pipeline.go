package mpauthx

import (
	"context"
	"errors"
	"io"

	"github.com/redis/go-redis/v9"
)

// pipeline sends the logins' issueScript through a go-redis
// autopipeliner, so that concurrent logins share round trips. The
// autopipeliner is private to one Client: go-redis caches one instance
// per client whose configuration the first caller fixes and whose Close
// stops it for everyone, so the pipeline builds its own on a clone of the
// caller's client and never touches the caller's instance. A nil
// *pipeline (another client type) sends plain commands. (IsTokenValid's
// reads go through checkBatcher instead, which measured faster.)
//
// A batch is retried whole when its connection drops, so only commands
// that may run twice go through it. issueScript may: it is get-or-set, so
// a second run returns the session the first one stored (or stores a new
// one if that session was revoked in between, which the caller never
// saw). RefreshToken's SET and RevokeToken's script stay on the plain
// client: a replayed refresh could overwrite a later one.
type pipeline struct {
	ap    *redis.AutoPipeliner
	owned io.Closer // a client created for ap, closed after it; nil if none
}

// pipelineOptions tunes the autopipeliner: two batches of up to 32
// commands in flight at once, so that with 64 callers one batch's
// callers prepare the next while the other is on the wire. Nothing sent
// through it needs ordering, hence Unordered. On a 2-core machine this
// measured ahead of go-redis's default (one ordered batch of up to 200),
// 64×1 and full duplex, and level with or ahead of 16×4; a MaxFlushDelay
// halved throughput. See BenchmarkBaseline and docs/performance.md.
func pipelineOptions() *redis.AutoPipelineOptions {
	return &redis.AutoPipelineOptions{MaxBatchSize: 32, MaxConcurrentBatches: 2, Unordered: true}
}

// newPipeline returns the pipeline for rdb, or nil when rdb's type cannot
// autopipeline privately.
//
// A *redis.Client (also a Sentinel failover client) is cloned with
// WithTimeout, which shares its connection pools and the hooks added so
// far but caches its own autopipeliner. A *redis.ClusterClient has no such
// clone: the pipeline opens one of its own with the same options (and so
// its own connections, without the caller's hooks) and closes it in close.
// A *redis.Ring cannot autopipeline (go-redis 9.23 refuses it): its
// commands are sent one by one.
func newPipeline(rdb redis.UniversalClient) *pipeline {
	var (
		ap    *redis.AutoPipeliner
		owned io.Closer
		err   error
	)
	switch r := rdb.(type) {
	case *redis.Client:
		ap, err = r.WithTimeout(r.Options().ReadTimeout).AsyncAutoPipelineWithOptions(pipelineOptions())
	case *redis.ClusterClient:
		opt := *r.Options()
		cc := redis.NewClusterClient(&opt)
		owned = cc
		ap, err = cc.AsyncAutoPipelineWithOptions(pipelineOptions())
	default:
		return nil
	}
	if err != nil { // a closed client: plain calls fail as they should
		if owned != nil {
			owned.Close()
		}
		return nil
	}
	return &pipeline{ap: ap, owned: owned}
}

// submit queues cmd and waits for its result. It returns ctx.Err() as
// soon as ctx ends, even while cmd is queued (cmd itself still runs; its
// result is dropped).
func (p *pipeline) submit(ctx context.Context, cmd redis.Cmder) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.ap.Submit(ctx, cmd).WaitContext(ctx)
}

// issue runs issueScript on keys (the session's, then the sealed session
// keys', if any) with session, ttlMillis, sealed and its field (the
// AppID), and returns the
// session the first key holds afterwards: EVALSHA, then EVAL if Redis
// does not have the script cached (after a restart or SCRIPT FLUSH), as
// redis.Script.Run does. A nil p runs the script on rdb, abandoned when
// ctx ends.
func (p *pipeline) issue(ctx context.Context, rdb redis.UniversalClient, keys []string, session string, ttlMillis int64, sealed, field string) (string, error) {
	if p == nil {
		var s string
		err := await(ctx, func() (err error) {
			s, err = issueScript.Run(ctx, rdb, keys, session, ttlMillis, sealed, field).Text()
			return err
		})
		return s, err
	}
	args := func(op, script string) []any {
		a := make([]any, 0, 3+len(keys)+4)
		a = append(a, op, script, len(keys))
		for _, k := range keys {
			a = append(a, k)
		}
		return append(a, session, ttlMillis, sealed, field)
	}
	cmd := redis.NewCmd(ctx, args("evalsha", issueScript.Hash())...)
	cmd.SetFirstKeyPos(3) // for Cluster routing, as go-redis's own EvalSha does
	err := p.submit(ctx, cmd)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmd = redis.NewCmd(ctx, args("eval", issueScriptSource)...)
		cmd.SetFirstKeyPos(3)
		err = p.submit(ctx, cmd)
	}
	if err != nil {
		return "", err
	}
	return cmd.Text()
}

// close stops the autopipeliner, flushing the commands it holds, then
// closes the client created for it, if any. A nil p does nothing.
func (p *pipeline) close() error {
	if p == nil {
		return nil
	}
	err := p.ap.Close()
	if p.owned != nil {
		err = errors.Join(err, p.owned.Close())
	}
	return err
}
