package mpauthx

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// A token is "<userID>|<sku>|<session>". The session is crypto/rand.Text():
// 26 characters of base32 (A-Z, 2-7) carrying 130 random bits.
//
// Redis holds one key per (userID, Sku):
//
//	mpauthx:{<userID>|<sku>}:session  ->  <session>, with the token's TTL
//	mpauthx:{<userID>|<sku>}:sks      ->  per AppID, the latest login's session key, sealed, with the same TTL
//
// so a user holds at most one live token per Sku, a token is checked with
// one GET, and the braces make the pair its own Redis Cluster hash slot.

// sessionKey returns the Redis key holding userID's session for c's Sku.
func (c *Client) sessionKey(userID string) string {
	return keyPrefix + "{" + userID + "|" + c.sku + "}:session"
}

// makeToken joins a token's parts.
func (c *Client) makeToken(userID, session string) string {
	return userID + "|" + c.sku + "|" + session
}

// ExtractOpenID returns the user ID of a token: the part before the first
// '|', or "" when there is none. For a WeChat mini-program user it is the
// unionId when WeChat gave one at their first login, else the openId (see
// User for the others). It does not check the token.
func (c *Client) ExtractOpenID(token string) string {
	i := strings.IndexByte(token, '|')
	if i < 0 {
		return ""
	}
	return token[:i]
}

// ExtractSku returns the middle part of a token of exactly three
// '|'-separated parts, else "". It does not check the token.
func (c *Client) ExtractSku(token string) string {
	_, sku, _, ok := splitToken(token)
	if !ok {
		return ""
	}
	return sku
}

// splitToken splits a token into exactly three parts.
func splitToken(token string) (userID, sku, session string, ok bool) {
	userID, rest, ok1 := strings.Cut(token, "|")
	sku, session, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 || strings.IndexByte(session, '|') >= 0 {
		return "", "", "", false
	}
	return userID, sku, session, true
}

// parse returns the user ID and session of a well-formed token of c's Sku.
func (c *Client) parse(token string) (userID, session string, ok bool) {
	userID, sku, session, ok := splitToken(token)
	if !ok || sku != c.sku || !validUserID(userID) || !validSession(session) {
		return "", "", false
	}
	return userID, session, true
}

// validUserID reports whether id can be a token's user ID: 1 to 256 bytes
// of printable UTF-8 (spaces allowed, but not at either end) without '|'.
func validUserID(id string) bool {
	if id == "" || len(id) > maxUserIDLen || id[0] == ' ' || id[len(id)-1] == ' ' {
		return false
	}
	// The common case, an openId or unionId: ASCII, checked bytewise.
	for i := 0; i < len(id); i++ {
		b := id[i]
		if b >= utf8.RuneSelf {
			return validUnicodeUserID(id)
		}
		if b < ' ' || b > '~' || b == '|' {
			return false
		}
	}
	return true
}

// validUnicodeUserID is validUserID for an ID that is not all ASCII and
// has no space at either end. No other space needs a check: every Unicode
// space but U+0020 is not printable.
func validUnicodeUserID(id string) bool {
	if !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r == '|' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validSession reports whether s looks like a session made by newSession.
func validSession(s string) bool {
	if len(s) != sessionLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 'A' || b > 'Z') && (b < '2' || b > '7') {
			return false
		}
	}
	return true
}

// newSession returns 130 bits from crypto/rand as 26 printable characters.
func newSession() string { return rand.Text() }

// ttlMillis is the token TTL as Redis PX milliseconds.
func (c *Client) ttlMillis() int64 { return c.ttl.Milliseconds() }

// issue returns userID's live token, or stores and returns a new one: one
// atomic step, so that concurrent logins of one user share one token. The
// same step stores the login's session key, sealed, for Decrypt and
// CheckSessionKey.
func (c *Client) issue(ctx context.Context, userID string, ws session) (Result, error) {
	sealed := c.sealSessionKey(userID, ws)
	s, err := c.pipe.issue(ctx, c.rdb, c.userKeys(userID), newSession(), c.ttlMillis(), sealed, c.appID)
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "storing the token failed", err))
	}
	return success(c.makeToken(userID, s)), nil
}

// RefreshToken replaces userID's token for this Sku by a new one and
// returns it; the old token stops being valid at once. The swap is one
// Redis command: at no moment are two tokens live, and at none is there
// none for a concurrent Authorize to replace. userID must be registered in
// the user table (StatusUserNotExist otherwise), matched exactly.
//
// As with RevokeToken, when the Redis primary has replicas RefreshToken
// returns the new token only once one of them holds it, so that a
// failover cannot bring the old token back.
//
// RefreshToken trusts its caller: it is a server-side call. Only call it
// with a user ID your server has authenticated, such as the one the
// Middleware puts in the request context.
func (c *Client) RefreshToken(ctx context.Context, userID string) (Result, error) {
	if err := c.checkOpen(); err != nil {
		return c.fail(ctx, err)
	}
	if err := checkUserID(userID); err != nil {
		return c.fail(ctx, err)
	}
	found, err := c.store.exists(ctx, userID)
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "looking the user up failed", err))
	}
	if !found {
		return c.fail(ctx, newError(StatusUserNotExist, "user does not exist", nil))
	}
	s := newSession()
	keys := c.userKeys(userID)
	err = await(ctx, func() error {
		_, err := c.runReplicated(ctx, refreshScript, nil, keys, s, c.ttlMillis())
		return err
	})
	c.cache.forget(userID) // at once on this Client, without waiting for Redis's invalidation
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "storing the token failed", err))
	}
	return success(c.makeToken(userID, s)), nil
}

// IsTokenValid reports whether token is live: issued by this Client's Sku,
// not expired, revoked or replaced. A malformed token or one of another Sku
// is (false, nil) without a Redis round trip. The error is non-nil only when
// Redis cannot answer (code StatusDatabaseError, wrapping ctx.Err() when
// ctx ended first) or the Client is closed (wrapping ErrClosed).
//
// With Config.LocalCache, a token this Client found live before is
// answered in process until Redis announces a write of its key, the key's
// TTL runs out, or the link that carries Redis's announcements fails (see
// Config.LocalCache).
//
// Concurrent calls share Redis round trips: their reads are coalesced
// into one MGET per batch (a pipeline of GETs on a Cluster or Ring), and
// each call still returns as soon as its own ctx ends. A lone call whose
// ctx can never end (context.Background) is sent directly, as a plain GET.
func (c *Client) IsTokenValid(ctx context.Context, token string) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, err
	}
	userID, s, ok := c.parse(token)
	if !ok {
		c.stats.checked()
		return false, nil
	}
	if c.cache.hit(userID, s) {
		c.stats.cacheHit()
		return true, nil
	}
	snap := c.cache.snapshot(userID)
	key := c.sessionKey(userID)
	cur, found, err := c.checks.get(ctx, key)
	if err != nil {
		c.stats.checkFailed()
		err = c.storageError(ctx, "checking the token failed", err)
		c.logFailure(ctx, err)
		return false, err
	}
	valid := found && subtle.ConstantTimeCompare([]byte(cur), []byte(s)) == 1
	if valid {
		c.cache.learn(snap, key, userID, s)
	}
	c.stats.checked()
	return valid, nil
}

// RevokeToken ends token at once. Revoking a token that is already gone,
// empty or malformed is a no-op that returns nil.
//
// When the Redis primary has replicas, RevokeToken returns nil only once
// one of them holds the revocation, so that a failover cannot bring the
// token back; when none acknowledges it within a second (or ctx's
// deadline), the error has code StatusDatabaseError, and the token is
// revoked on the primary all the same. See docs/operations.md.
func (c *Client) RevokeToken(ctx context.Context, token string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	userID, s, ok := c.parse(token)
	if !ok {
		return nil
	}
	keys := c.userKeys(userID)
	var deleted int64
	err := await(ctx, func() error {
		cmd, err := c.runReplicated(ctx, revokeScript, revoked, keys, s)
		if cmd != nil {
			deleted, _ = cmd.Int64()
		}
		return err
	})
	// At once on this Client, without waiting for Redis's invalidation;
	// deleted is read only once f has returned (err nil). A token that did
	// not match changed nothing: forgetting the user's live entry then
	// would let forged tokens evict it.
	if err != nil || deleted != 0 {
		c.cache.forget(userID)
	}
	if err != nil {
		err = c.storageError(ctx, "revoking the token failed", err)
		c.logFailure(ctx, err)
		return err
	}
	return nil
}

// await runs the Redis call f and returns its error, or ctx's error as
// soon as ctx ends first: go-redis gives up on a command only at its
// socket deadlines, which follow ctx only when the client has
// ContextTimeoutEnabled, so a hung Redis would otherwise hold the call. A
// write abandoned this way may still be applied when Redis answers, which
// every write here tolerates (an orphan token is handed to the next login;
// a late refresh or revoke is what the caller asked for). The goroutine
// running f lives on until go-redis gives up: at its socket timeouts, or
// never with ReadTimeout -1 and a Redis that never answers.
func await(ctx context.Context, f func() error) error {
	if ctx.Done() == nil {
		return f()
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished too: its result wins
			return err
		default:
			return ctx.Err()
		}
	}
}

// storageError wraps a Redis or SQL failure in a StatusDatabaseError.
// When ctx has ended, the error wraps ctx's error even if the cause does
// not: a socket deadline taken from ctx can fire just before ctx's own
// timer, and the caller must still see context.DeadlineExceeded.
//
// A call that Close overtook, whose Redis client Close shut, fails like
// any call after Close: with ErrClosed. A cause that is an *Error already
// (the store's refusals: StatusAccountConflict, StatusUserNotExist) is
// returned as it is.
func (c *Client) storageError(ctx context.Context, msg string, cause error) *Error {
	if e, ok := cause.(*Error); ok {
		return e
	}
	end := ctxErr(ctx)
	if end == nil && c.closed.Load() {
		return errClosed() // Close shut what the call was using
	}
	if end != nil && !errors.Is(cause, end) {
		cause = fmt.Errorf("%w: %w", end, cause)
	}
	return newError(StatusDatabaseError, msg, cause)
}

// ctxErr returns ctx.Err(), or context.DeadlineExceeded when ctx's
// deadline has passed but its timer has not fired yet.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
