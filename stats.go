package mpauthx

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Stats is a snapshot of a Client's counters since New, in the spirit of
// database/sql's DBStats and go-redis's PoolStats: every field only
// grows. Config.MeterProvider exports the same counters as OpenTelemetry
// metrics (docs/operations.md).
type Stats struct {
	// Logins counts the calls of Authorize, AuthorizeCode and
	// AuthorizePhone by outcome: StatusSuccess for those that returned a
	// token, else the error's code (Code(err)). Codes never seen are
	// absent.
	Logins map[StatusCode]uint64
	// Checks counts the IsTokenValid calls answered (true or false),
	// malformed tokens and tokens of another Sku included.
	Checks uint64
	// CacheHits counts the Checks answered by Config.LocalCache, without
	// a Redis round trip.
	CacheHits uint64
	// CheckErrors counts the IsTokenValid calls that failed because
	// Redis could not answer (StatusDatabaseError); they are not in
	// Checks.
	CheckErrors uint64
	// PlatformCalls counts the HTTP requests made to WeChat (or to the
	// Client's platform): logins, access tokens, phone numbers,
	// checksession, CallAPI, retries included.
	PlatformCalls uint64
	// PlatformErrors counts the PlatformCalls that failed: no answer
	// (transport error or timeout), an HTTP status other than 200, or a
	// reply carrying the platform's error code (WeChat's errcode,
	// Douyin's err_no, Alipay's error_response), such as an invalid
	// login code or a rejected access token.
	PlatformErrors uint64
	// AccessTokenRenewals counts the access tokens this Client fetched
	// from the platform (stable_token); tokens another instance fetched
	// and shared through Redis are not counted.
	AccessTokenRenewals uint64
	// ForcedRefreshes counts the AccessTokenRenewals that were forced
	// refreshes, after the platform rejected the current token: WeChat
	// allows 20 a day.
	ForcedRefreshes uint64
}

// Stats returns the Client's counters since New. It adds up per-core
// shards and allocates the Logins map: cheap, but not for a hot loop.
// It works after Close too.
func (c *Client) Stats() Stats {
	return c.stats.snapshot()
}

// loginSlots holds one counter per login outcome: StatusSuccess, the
// codes 6000 to 6000+loginSlots-3, and StatusUnknownError (which also
// counts any other code).
const loginSlots = 128

// checkShardBytes is the size of one shard of the check counters: two
// cache lines, so that neither a neighbour nor the adjacent-line
// prefetcher makes two cores share one.
const checkShardBytes = 128

// counters are a Client's Stats. The check path's counters are sharded so
// that cores checking tokens at once do not fight over one cache line;
// the others count slow calls (logins, HTTP requests) and are plain
// atomics.
type counters struct {
	logins   [loginSlots]atomic.Uint64
	calls    atomic.Uint64 // PlatformCalls
	errs     atomic.Uint64 // PlatformErrors
	renewals atomic.Uint64
	forced   atomic.Uint64
	_        [checkShardBytes]byte // keeps the fields the checks read off the lines written above

	shift  uint // 64 - log2(len(shards))
	shards []checkShard
}

// checkShard is one shard of the check counters. A check adds one to
// exactly one of them, as it returns: one atomic add on the path of a
// cached check.
type checkShard struct {
	checked atomic.Uint64 // answered by Redis, or without it (a malformed token)
	hits    atomic.Uint64 // answered by the local cache
	failed  atomic.Uint64 // failed
	_       [checkShardBytes - 24]byte
}

// newCounters returns zeroed counters with a power of two of check
// shards, about four per core (8 to 256).
func newCounters() *counters {
	n := max(8, min(256, 4*runtime.GOMAXPROCS(0)))
	n = 1 << bits.Len(uint(n-1))
	return &counters{shards: make([]checkShard, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
}

// shard returns the check shard of the calling goroutine. It hashes the
// address of a local variable: goroutines have stacks of their own, so
// those running at once on different cores land, but for an occasional
// collision, on different shards, at the cost of a multiplication (a
// per-core index would need the runtime's internals, a random one costs
// more than the increment it spreads).
func (s *counters) shard() *checkShard {
	var probe byte
	h := uint64(uintptr(unsafe.Pointer(&probe))) >> 10
	return &s.shards[(h*0x9E3779B97F4A7C15)>>s.shift]
}

// checked counts a check answered other than by the local cache.
func (s *counters) checked() { s.shard().checked.Add(1) }

// cacheHit counts a check answered by the local cache.
func (s *counters) cacheHit() { s.shard().hits.Add(1) }

// checkFailed counts a check that failed.
func (s *counters) checkFailed() { s.shard().failed.Add(1) }

// login counts a login that ended with code.
func (s *counters) login(code StatusCode) {
	i := loginSlots - 1 // StatusUnknownError, and any other code
	switch {
	case code == StatusSuccess:
		i = 0
	case code >= StatusDatabaseError && code < StatusDatabaseError+loginSlots-2:
		i = 1 + int(code-StatusDatabaseError)
	}
	s.logins[i].Add(1)
}

// loginCode is the status code counted by logins[i].
func loginCode(i int) StatusCode {
	switch i {
	case 0:
		return StatusSuccess
	case loginSlots - 1:
		return StatusUnknownError
	}
	return StatusDatabaseError + StatusCode(i-1)
}

// platformCall counts an HTTP request to the platform.
func (s *counters) platformCall() { s.calls.Add(1) }

// platformError counts a failed HTTP request to the platform.
func (s *counters) platformError() { s.errs.Add(1) }

// renewed counts an access token fetched from the platform; force tells
// whether it was a forced refresh.
func (s *counters) renewed(force bool) {
	s.renewals.Add(1)
	if force {
		s.forced.Add(1)
	}
}

// snapshot adds the counters up.
func (s *counters) snapshot() Stats {
	st := Stats{Logins: make(map[StatusCode]uint64)}
	for i := range s.logins {
		if n := s.logins[i].Load(); n != 0 {
			st.Logins[loginCode(i)] = n
		}
	}
	var checked, hits, failed uint64
	for i := range s.shards {
		checked += s.shards[i].checked.Load()
		hits += s.shards[i].hits.Load()
		failed += s.shards[i].failed.Load()
	}
	st.Checks, st.CacheHits, st.CheckErrors = checked+hits, hits, failed
	st.PlatformCalls = s.calls.Load()
	st.PlatformErrors = s.errs.Load()
	st.AccessTokenRenewals = s.renewals.Load()
	st.ForcedRefreshes = s.forced.Load()
	return st
}
