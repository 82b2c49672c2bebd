package mpauthx

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The app's access token for WeChat's server APIs comes from the stable
// token endpoint, which, unlike the older cgi-bin/token, never ends the
// token another server holds in normal mode. One token per AppID is shared
// by every instance and every Sku through Redis:
//
//	mpauthx:{app:<appid>}:access_token         the sealed token and its expiry, PX its lifetime
//	mpauthx:{app:<appid>}:access_token:lock    the instance refreshing it (SET NX PX)
//	mpauthx:{app:<appid>}:access_token:failed  the last failed refresh, sealed, while refreshes back off
//	mpauthx:{app:<appid>}:force_spacing        present for 30 s after a forced refresh
//	mpauthx:{app:<appid>}:force_count:<date>   forced refreshes on that day (Beijing time)
//
// and kept in process in an atomic pointer, so that AccessToken costs no
// round trip until the token is due for renewal. A Douyin mini program's
// client_token (clienttoken.go) is shared the same way, under the same
// keys: the machinery below takes each platform's fetch from its
// tokenSource.
//
// Every write of the shared token compares: it replaces only the value
// the writer read when it took the lock, so that a writer that stalled
// past its lock cannot put an older token over a newer one.

// Access token tuning.
const (
	// accessTokenRenewLead is how long before its expiry a token is
	// renewed: inside the last 5 minutes, when stable_token in normal mode
	// hands out the next token (both are valid until the old one ends).
	accessTokenRenewLead = 4*time.Minute + 30*time.Second
	// accessTokenMinRenew is the shortest time between two renewals of
	// one token, should WeChat hand out a token that is due at once.
	accessTokenMinRenew = 10 * time.Second
	// accessTokenBackOff is how long no refresh is tried after one
	// failed, on any instance; it doubles with each failure in a row, up
	// to accessTokenMaxBackOff. Callers with a still-valid token keep it
	// meanwhile; the others get the failure's error at once.
	accessTokenBackOff    = 5 * time.Second
	accessTokenMaxBackOff = 30 * time.Second
	// accessTokenFailureKeep is how long Redis keeps a failure past its
	// back-off, so that the next failure in a row backs off longer.
	accessTokenFailureKeep = 2 * accessTokenMaxBackOff
	// accessTokenRefreshTimeout bounds one refresh, Redis and WeChat
	// included; callers stop waiting for it when their ctx ends.
	accessTokenRefreshTimeout = 15 * time.Second
	// accessTokenLockTTL is the refresh lock's lifetime: an instance that
	// dies holding it blocks the others no longer.
	accessTokenLockTTL = accessTokenRefreshTimeout + 5*time.Second
	// accessTokenRecheck is how long an instance goes on with its
	// still-valid token while another one renews it, before it looks at
	// Redis again.
	accessTokenRecheck = time.Second
	// accessTokenPoll is how often an instance waiting for another's
	// refresh looks at Redis.
	accessTokenPoll = 50 * time.Millisecond
	// forceSpacing and forceDailyLimit are WeChat's limits on
	// stable_token's force_refresh, enforced in Redis for all instances;
	// Douyin's renewals after a rejection keep them too.
	forceSpacing    = 30 * time.Second
	forceDailyLimit = 20
	// forceCountTTL keeps a day's count of forced refreshes.
	forceCountTTL = 48 * time.Hour
	// maxAccessTokenLen caps an access token from WeChat (about 140
	// characters today).
	maxAccessTokenLen = 2048
)

// beijing is WeChat's time zone, in which its daily quotas reset.
var beijing = time.FixedZone("UTC+8", 8*60*60)

// tokenSource is where a platform hands out the app's access token.
type tokenSource struct {
	platform string // who hands it out and rejects it, in errors: "WeChat", "Douyin"
	name     string // the endpoint, in errors
	// current is set when a plain fetch hands out the token valid now
	// (WeChat's stable_token in normal mode): a rejected token is then
	// renewed by a plain fetch first. Unset, every fetch makes a new
	// token (Douyin's client_token, whose previous token stays valid for
	// 5 minutes), and force means nothing.
	current bool
	// fetch makes one request; every failure is a StatusAccessTokenError
	// *Error wrapping the cause.
	fetch func(c *Client, ctx context.Context, force bool) (*accessToken, error)
}

// The platforms' access tokens.
var (
	stableTokenSource = &tokenSource{platform: "WeChat", name: "stable_token", current: true, fetch: (*Client).fetchStableToken}
	clientTokenSource = &tokenSource{platform: "Douyin", name: "client_token", fetch: (*Client).fetchClientToken}
)

// tokenSource is where c's access token comes from; nil on a platform
// without one.
func (c *Client) tokenSource() *tokenSource {
	switch c.platform {
	case WeChatMiniProgram, WeChatOfficialAccount:
		return stableTokenSource
	case DouyinMiniProgram:
		return clientTokenSource
	}
	return nil
}

// accessToken is an access token as cached in process; it never changes
// once published.
type accessToken struct {
	token     string
	expiry    time.Time // when WeChat ends it (measured from before the request)
	refreshAt time.Time // when to fetch its successor
}

// usable reports whether t can be handed out at now instead of rejected.
func (t *accessToken) usable(rejected string, now time.Time) bool {
	return t != nil && t.token != rejected && now.Before(t.expiry)
}

// failure is a failed refresh, whose error callers without a usable
// token get until the back-off ends; it never changes once published.
type failure struct {
	err   error
	until time.Time // the end of the back-off
	count int       // failures in a row, this one included
}

// active reports whether f is backing off at now.
func (f *failure) active(now time.Time) bool {
	return f != nil && now.Before(f.until)
}

// backOffDelay is the back-off after count failures in a row.
func backOffDelay(count int) time.Duration {
	d := accessTokenBackOff
	for i := 1; i < count && d < accessTokenMaxBackOff; i++ {
		d *= 2
	}
	return min(d, accessTokenMaxBackOff)
}

// accessTokens is a Client's copy of the app's access token and its
// single in-process refresh.
type accessTokens struct {
	cur atomic.Pointer[accessToken]
	// nextTry is the UnixNano before which no refresh starts in the
	// background: the end of a back-off, or the next look at Redis while
	// another instance renews the token.
	nextTry atomic.Int64
	// failure is the last failed refresh (this instance's, or another's
	// read from Redis); nil once a token is adopted.
	failure atomic.Pointer[failure]

	mu      sync.Mutex
	flight  *tokenFlight // the refresh in progress, if any
	stopped bool         // Close ran: no more refreshes
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// tokenFlight is one refresh, shared by the callers that wait for it.
type tokenFlight struct {
	rejected string // the token the platform rejected; "" for a renewal
	done     chan struct{}
	err      error // set before done is closed
}

// newAccessTokens returns the empty cache of a new Client.
func newAccessTokens() *accessTokens {
	a := &accessTokens{}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a
}

// close ends the refresh in flight, if any, and waits for it.
func (a *accessTokens) close() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}

// accessTokenKey, accessTokenLockKey, accessTokenFailedKey,
// forceSpacingKey and forceCountKey are the Redis keys of the app's access
// token; they share one hash slot.
func (c *Client) accessTokenKey() string       { return c.appKeyPrefix + "access_token" }
func (c *Client) accessTokenLockKey() string   { return c.appKeyPrefix + "access_token:lock" }
func (c *Client) accessTokenFailedKey() string { return c.appKeyPrefix + "access_token:failed" }
func (c *Client) forceSpacingKey() string      { return c.appKeyPrefix + "force_spacing" }
func (c *Client) forceCountKey(now time.Time) string {
	return c.appKeyPrefix + "force_count:" + now.In(beijing).Format("20060102")
}

// AccessToken returns the app's access token for WeChat's server APIs,
// shared by every instance through Redis.
//
// The token is fetched from stable_token, stored sealed in Redis for the
// other instances (one per AppID, shared by every Sku) and kept in
// process: a call costs no round trip until the token is due for renewal,
// in its last minutes, when one instance at a time fetches the next one
// while every caller goes on with the current, still valid, token.
//
// What the other instances see after one renews the token: the new token
// is in Redis at once, but each instance goes on handing out the token it
// holds in process until that one is due for renewal (the same moment on
// every instance, give or take clock skew: it then takes the new token
// from Redis) or an API rejects it. A renewal on schedule leaves the old
// token valid until it ends, so nothing fails. A renewal after a
// rejection means the old token has ended (WeChat ended it, or a forced
// refresh did): another instance's next calls with it get errcode 40001,
// and its RenewAccessToken (which PhoneNumber, AuthorizePhone and
// CheckSessionKey call themselves before retrying once) takes the new
// token from Redis, without asking WeChat.
//
// A caller waits only when there is no valid token at all; if none can be
// had, the error has code StatusAccessTokenError and wraps the cause (a
// *WeChatError for an errcode), and every caller on every instance gets
// that error at once, without asking WeChat again, for 5 s (doubling with
// each failure in a row, up to 30 s). Redis being down does not stop it:
// each instance then fetches the token for itself.
//
// Use it for any WeChat server API. When such an API answers errcode
// 40001, 42001 or 40014, call RenewAccessToken with the rejected token.
//
// On a Douyin Client (Config.Platform DouyinMiniProgram) it is the app's
// client_token from open.douyin.com (on Config.APIBase when that is set),
// shared and renewed the same way, for the APIs that take an access-token
// header. Each fetch makes a new client_token, the previous one staying
// valid for 5 minutes: a rejected one (err_no 28001003 or 28001008) is
// replaced by one fetch for all instances, with the limits of a forced
// refresh. On the other platforms it fails with StatusUnsupported.
func (c *Client) AccessToken(ctx context.Context) (string, error) {
	if err := c.checkOpen(); err != nil {
		return "", err
	}
	if err := c.supports(callAccessToken); err != nil {
		return "", err
	}
	if t := c.at.cur.Load(); t != nil && c.now().Before(t.refreshAt) {
		return t.token, nil
	}
	t, err := c.accessToken(ctx, "")
	if err != nil {
		c.logFailure(ctx, err)
		return "", err
	}
	return t.token, nil
}

// RenewAccessToken returns a new access token after WeChat rejected
// rejected (errcode 40001, 42001 or 40014). It is compare-and-refresh:
// when another caller or instance has already replaced rejected, it
// returns the replacement from Redis (or from memory) without asking
// WeChat. Otherwise one instance asks stable_token in normal mode, which
// hands out WeChat's current token: another deployment or a restarted
// Redis may simply not know it yet. Only if WeChat hands out the rejected
// token again does that instance force a refresh for all, within WeChat's
// limits (30 s apart, 20 a day, counted in Redis), which ends the old
// token everywhere. Many callers on many instances renewing the same
// rejected token cause one renewal. When it fails, every renewal on every
// instance gets the same error at once for the back-off (see
// AccessToken), so that an API rejecting every token does not cost a
// stable_token call per call. On a Douyin Client, where every fetch makes
// a new token, the instance that holds the lock fetches one, within the
// same limits.
func (c *Client) RenewAccessToken(ctx context.Context, rejected string) (string, error) {
	if err := c.checkOpen(); err != nil {
		return "", err
	}
	if err := c.supports(callAccessToken); err != nil {
		return "", err
	}
	if rejected == "" {
		return "", newError(StatusRequiredParamsMissing, "rejected is required", nil)
	}
	t, err := c.accessToken(ctx, rejected)
	if err != nil {
		c.logFailure(ctx, err)
		return "", err
	}
	return t.token, nil
}

// accessToken returns a usable token other than rejected: the cached one,
// or one refreshed by the single refresh in flight. A caller holding a
// still-valid token does not wait for a renewal; one without gets the
// last failure's error while its back-off lasts.
func (c *Client) accessToken(ctx context.Context, rejected string) (*accessToken, error) {
	if c.tokenSource() == nil {
		return nil, errUnsupported(c.platform, "the app's access token")
	}
	for attempt := 0; ; attempt++ {
		now := c.now()
		t := c.at.cur.Load()
		usable := t.usable(rejected, now)
		if usable && (now.Before(t.refreshAt) || now.UnixNano() < c.at.nextTry.Load()) {
			return t, nil
		}
		if f := c.at.failure.Load(); !usable && f.active(now) {
			return nil, f.err
		}
		f := c.refreshFlight(rejected)
		if f == nil {
			return nil, errClosed()
		}
		if usable {
			return t, nil // renewed in the background
		}
		select {
		case <-f.done:
			if err := c.checkOpen(); err != nil {
				return nil, err // Close ended the refresh
			}
		case <-ctx.Done():
			return nil, tokenError(fmt.Errorf("%w: waiting for the access token", ctx.Err()))
		}
		if t := c.at.cur.Load(); t.usable(rejected, c.now()) {
			return t, nil
		}
		// A flight for another purpose (a renewal when ours is a
		// rejection, or the reverse) may leave us without a token:
		// start ours once.
		if f.rejected == rejected || attempt > 0 {
			if f.err != nil {
				return nil, f.err
			}
			return nil, tokenError(errors.New("no access token"))
		}
	}
}

// refreshFlight returns the refresh in flight, or starts one for
// rejected. It returns nil after Close.
func (c *Client) refreshFlight(rejected string) *tokenFlight {
	a := c.at
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil
	}
	if a.flight != nil {
		return a.flight
	}
	f := &tokenFlight{rejected: rejected, done: make(chan struct{})}
	a.flight = f
	a.wg.Go(func() {
		ctx, cancel := context.WithTimeout(a.ctx, accessTokenRefreshTimeout)
		f.err = c.refreshAccessToken(ctx, rejected)
		cancel()
		a.mu.Lock()
		a.flight = nil
		a.mu.Unlock()
		close(f.done)
	})
	return f
}

// now is the Client's clock for the access token: time.Now, unless a
// test set another.
func (c *Client) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// adopt publishes t as the current token, ending any back-off.
func (c *Client) adopt(t *accessToken) {
	c.at.cur.Store(t)
	c.at.nextTry.Store(0)
	c.at.failure.Store(nil)
}

// adoptable reports whether the shared token t can be taken instead of
// refreshing: not rejected, valid, and, for a scheduled renewal, not yet
// due itself.
func (c *Client) adoptable(t *accessToken, rejected string) bool {
	now := c.now()
	return t.usable(rejected, now) && (rejected != "" || now.Before(t.refreshAt))
}

// sharedState is what Redis holds of the app's access token.
type sharedState struct {
	tok  *accessToken // nil when there is none or it cannot be opened
	raw  string       // the token key's value as read, "" for none: what a write compares with
	fail *failure     // the last failed refresh, nil when none or it cannot be opened
}

// refreshAccessToken makes a token other than rejected current: the one
// in Redis if it will do, else one fetched by the instance holding the
// lock, while the others wait for it in Redis or go on with their
// still-valid token. A failure recorded in Redis and still backing off
// is returned (or, to a caller with a valid token, waited out) without
// asking WeChat. With Redis down it fetches a token for this instance
// alone, never forcing.
func (c *Client) refreshAccessToken(ctx context.Context, rejected string) error {
	st, err := c.loadShared(ctx)
	if err != nil {
		return c.refreshUnshared(ctx, rejected, err)
	}
	if c.adoptable(st.tok, rejected) {
		c.adopt(st.tok)
		return nil
	}
	if st.fail.active(c.now()) {
		return c.backOff(st, rejected)
	}
	lock := rand.Text()
	for {
		ok, err := c.rdb.SetNX(ctx, c.accessTokenLockKey(), lock, accessTokenLockTTL).Result()
		if err != nil {
			return c.refreshUnshared(ctx, rejected, err)
		}
		if ok {
			break
		}
		// Another instance is refreshing: go on with a valid token, or
		// wait for the one it stores, its failure, or the end of its
		// lock.
		if now := c.now(); c.at.cur.Load().usable(rejected, now) {
			c.at.nextTry.Store(now.Add(accessTokenRecheck).UnixNano())
			return nil
		}
		t := time.NewTimer(accessTokenPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			err := tokenError(fmt.Errorf("%w: waiting for another instance's refresh", ctx.Err()))
			c.recordFailure(err, sharedState{}, false)
			return err
		case <-t.C:
		}
		if st, err = c.loadShared(ctx); err != nil {
			return c.refreshUnshared(ctx, rejected, err)
		}
		if st.tok.usable(rejected, c.now()) {
			c.adopt(st.tok)
			return nil
		}
		if st.fail.active(c.now()) {
			return c.backOff(st, rejected)
		}
	}
	defer c.unlockAccessToken(lock)

	if st, err = c.loadShared(ctx); err != nil {
		return c.refreshUnshared(ctx, rejected, err)
	}
	if c.adoptable(st.tok, rejected) {
		c.adopt(st.tok)
		return nil
	}
	if st.fail.active(c.now()) {
		return c.backOff(st, rejected)
	}
	if err := c.renewLocked(ctx, rejected, st); err != nil {
		c.recordFailure(err, st, true)
		return err
	}
	return nil
}

// renewLocked fetches a token other than rejected under the lock, st
// being what Redis held when it was taken, and shares it. Where a plain
// fetch hands out the current token (WeChat's stable_token in normal
// mode), a rejected token is renewed by a plain fetch first, which hands
// out the token WeChat has moved on to, and forced only when that is the
// rejected token again. Where every fetch makes a new token (Douyin's
// client_token), a rejected token is renewed by one fetch. Either way the
// forced fetch is decided in forceScript for all instances: only while
// Redis still holds the rejected token, 30 s apart and 20 a day.
func (c *Client) renewLocked(ctx context.Context, rejected string, st sharedState) error {
	src := c.tokenSource()
	if rejected == "" || src.current {
		t, err := src.fetch(c, ctx, false)
		if err != nil {
			return err
		}
		if t.token != rejected {
			return c.share(ctx, t, st.raw, rejected)
		}
	}
	why := src.platform + " rejected the access token"
	if src.current {
		why += ", " + src.name + " handed it out again,"
	}
	now := c.now()
	n, err := forceScript.Run(ctx, c.rdb,
		[]string{c.accessTokenKey(), c.forceSpacingKey(), c.forceCountKey(now)},
		st.raw, forceSpacing.Milliseconds(), forceDailyLimit, forceCountTTL.Milliseconds()).Int()
	if err != nil {
		return tokenError(fmt.Errorf("%s and Redis, which counts forced refreshes, failed: %w", why, err))
	}
	switch n {
	case 0:
		// Replaced meanwhile: this instance outlived its lock, and
		// another one renewed the token.
		if st, err := c.loadShared(ctx); err == nil && st.tok.usable(rejected, c.now()) {
			c.adopt(st.tok)
			return nil
		}
		return tokenError(errors.New(why + " and another instance replaced it with a token this one cannot use"))
	case 1:
	default:
		limit := "a forced refresh ran less than 30 s ago"
		if n == -2 {
			limit = "the daily budget of 20 forced refreshes is used up"
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: the access token was rejected and a forced refresh is not allowed now",
			slog.String("reason", limit))
		return tokenError(fmt.Errorf("%s and %s", src.platform+" rejected the access token", limit))
	}
	t, err := src.fetch(c, ctx, true)
	if we := (*WeChatError)(nil); src.current && errors.As(err, &we) && (we.ErrCode == ErrCodeRateLimited || we.ErrCode == ErrCodeDailyQuota) {
		// WeChat's count of forced refreshes is not Redis's (Redis
		// restarted and forgot one, or another deployment forced one).
		c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: WeChat refused a forced refresh of the access token that Redis allowed",
			slog.Int("errcode", we.ErrCode))
		return tokenError(fmt.Errorf("WeChat rejected the access token and refused a forced refresh (%s)", weChatErrText(we.ErrCode)))
	}
	if err != nil {
		return err
	}
	if t.token == rejected {
		return tokenError(errors.New(src.platform + " rejected the access token and a forced refresh handed it out again"))
	}
	return c.share(ctx, t, st.raw, rejected)
}

// share stores t in Redis for the other instances, if Redis still holds
// expect (what it held when this instance took the lock), and adopts it.
// When another instance wrote meanwhile (this one outlived its lock), the
// newer of the two tokens wins: the shared one is adopted if it is valid,
// not rejected and ends no earlier than t; otherwise t replaces it.
func (c *Client) share(ctx context.Context, t *accessToken, expect, rejected string) error {
	for range 3 {
		ttl := t.expiry.Sub(c.now())
		if ttl <= time.Millisecond {
			break
		}
		blob := c.seal.seal(encodeAccessToken(t), c.accessTokenKey())
		ok, err := shareScript.Run(ctx, c.rdb, []string{c.accessTokenKey(), c.accessTokenFailedKey()},
			expect, blob, ttl.Milliseconds()).Bool()
		if err != nil {
			// The token is good: use it here, and let the others
			// fetch their own.
			c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: sharing the access token in Redis failed",
				slog.String("error", err.Error()))
			break
		}
		if ok {
			break
		}
		st, err := c.loadShared(ctx)
		if err != nil {
			break
		}
		if st.tok.usable(rejected, c.now()) && st.tok.expiry.UnixMilli() >= t.expiry.UnixMilli() { // Redis keeps milliseconds
			c.adopt(st.tok)
			return nil
		}
		expect = st.raw
	}
	c.adopt(t)
	return nil
}

// refreshUnshared fetches a token for this instance alone after Redis
// failed with cause. It never forces (the limits are counted in Redis):
// where a plain fetch hands out the current token, a rejected token is
// replaced only if the platform has moved on. A failure backs off on this
// instance only.
func (c *Client) refreshUnshared(ctx context.Context, rejected string, cause error) error {
	c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: Redis failed; fetching the access token without sharing it",
		slog.String("error", cause.Error()))
	src := c.tokenSource()
	t, err := src.fetch(c, ctx, false)
	if err == nil && t.token == rejected {
		err = tokenError(fmt.Errorf("%s rejected the access token, and Redis, which counts forced refreshes, failed: %w", src.platform, cause))
	}
	if err != nil {
		c.recordFailure(err, sharedState{}, false)
		return err
	}
	c.adopt(t)
	return nil
}

// backOff makes st.fail, a failure another instance recorded in Redis,
// this instance's too: a caller with a token other than rejected (its
// own, or a valid one in Redis) goes on with it, the others get the
// failure's error.
func (c *Client) backOff(st sharedState, rejected string) error {
	now := c.now()
	if !c.at.cur.Load().usable(rejected, now) && st.tok.usable(rejected, now) {
		c.adopt(st.tok) // due, but valid: better than none
	}
	c.at.failure.Store(st.fail)
	c.at.nextTry.Store(st.fail.until.UnixNano())
	if c.at.cur.Load().usable(rejected, now) {
		return nil
	}
	return st.fail.err
}

// recordFailure starts the back-off after a failed refresh: on this
// instance, and, when shared is set, on every instance through Redis, if
// Redis still holds the token st read (a refresh that outlived its lock
// records nothing over its successor's result). It logs the failure,
// unless Close ended the refresh.
func (c *Client) recordFailure(err error, st sharedState, shared bool) {
	if c.at.ctx.Err() != nil {
		return // Close ended it: no failure to report
	}
	count := 1
	if f := c.at.failure.Load(); f != nil {
		count = f.count + 1
	}
	if st.fail != nil && st.fail.count >= count {
		count = st.fail.count + 1
	}
	now := c.now()
	delay := backOffDelay(count)
	f := &failure{err: err, until: now.Add(delay), count: count}
	c.at.failure.Store(f)
	c.at.nextTry.Store(f.until.UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // the refresh's own may have ended
	defer cancel()
	c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: refreshing the access token failed",
		slog.Int("status_code", int(Code(err))), slog.String("error", err.Error()), slog.Duration("retry_in", delay))
	if !shared {
		return
	}
	rec := c.seal.seal(encodeFailure(f), c.accessTokenFailedKey())
	failScript.Run(ctx, c.rdb, []string{c.accessTokenKey(), c.accessTokenFailedKey()},
		st.raw, rec, (delay + accessTokenFailureKeep).Milliseconds())
}

// unlockAccessToken releases the refresh lock if this refresh still holds
// it, on a context of its own: the refresh's may have ended.
func (c *Client) unlockAccessToken(lock string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	unlockScript.Run(ctx, c.rdb, []string{c.accessTokenLockKey()}, lock)
}

// loadShared reads the shared token and the last failure in one round
// trip.
func (c *Client) loadShared(ctx context.Context) (sharedState, error) {
	vals, err := c.rdb.MGet(ctx, c.accessTokenKey(), c.accessTokenFailedKey()).Result()
	if err != nil {
		return sharedState{}, err
	}
	var st sharedState
	if len(vals) != 2 {
		return st, nil
	}
	if blob, ok := vals[0].(string); ok {
		st.raw = blob
		if plain, err := c.seal.open(blob, c.accessTokenKey()); err == nil {
			st.tok, _ = decodeAccessToken(plain)
		}
	}
	if blob, ok := vals[1].(string); ok {
		if plain, err := c.seal.open(blob, c.accessTokenFailedKey()); err == nil {
			st.fail = decodeFailure(plain)
		}
	}
	return st, nil
}

// encodeAccessToken is the plaintext of a shared token: its expiry and
// renewal time in Unix milliseconds (8 bytes each, big-endian), then the
// token.
func encodeAccessToken(t *accessToken) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(t.expiry.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.refreshAt.UnixMilli()))
	return append(b, t.token...)
}

// decodeAccessToken undoes encodeAccessToken.
func decodeAccessToken(b []byte) (*accessToken, bool) {
	if len(b) <= 16 || !validAccessToken(string(b[16:])) {
		return nil, false
	}
	return &accessToken{
		token:     string(b[16:]),
		expiry:    time.UnixMilli(int64(binary.BigEndian.Uint64(b))),
		refreshAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b[8:]))),
	}, true
}

// failureRecord is the plaintext of a shared failure: enough of its error
// for the other instances to return an equivalent one. Its texts are
// those of the error itself, which never holds a secret (a *WeChatError's
// errmsg is redacted already).
type failureRecord struct {
	Until        int64      `json:"until"` // Unix milliseconds
	Count        int        `json:"count"`
	Message      string     `json:"message"`         // the *Error's Message
	ErrCode      int        `json:"errcode"`         // a wrapped *WeChatError's, if any
	ErrMsg       string     `json:"errmsg"`          // ...
	Inner        StatusCode `json:"inner,omitempty"` // else a wrapped *Error's code, if any
	InnerMessage string     `json:"innerMessage,omitempty"`
	Cause        string     `json:"cause,omitempty"` // else the cause's text
}

// encodeFailure is the plaintext of f in Redis.
func encodeFailure(f *failure) []byte {
	r := failureRecord{Until: f.until.UnixMilli(), Count: f.count, Message: StatusAccessTokenError.Message()}
	var e *Error
	if errors.As(f.err, &e) {
		r.Message = e.message()
	}
	var we *WeChatError
	var inner *Error
	switch {
	case errors.As(f.err, &we):
		r.ErrCode, r.ErrMsg = we.ErrCode, we.ErrMsg
	case e != nil && errors.As(e.Err, &inner):
		r.Inner, r.InnerMessage = inner.Code, inner.message()
	case e != nil && e.Err != nil:
		r.Cause = e.Err.Error()
	}
	b, _ := json.Marshal(r)
	return b
}

// decodeFailure undoes encodeFailure; nil when b is not a failure.
func decodeFailure(b []byte) *failure {
	var r failureRecord
	if json.Unmarshal(b, &r) != nil || r.Count <= 0 || r.Message == "" {
		return nil
	}
	const note = "another instance's refresh failed"
	var cause error
	switch {
	case r.ErrCode != 0:
		cause = fmt.Errorf("%s: %w", note, &WeChatError{ErrCode: r.ErrCode, ErrMsg: r.ErrMsg})
	case r.Inner != 0:
		cause = fmt.Errorf("%s: %w", note, newError(r.Inner, r.InnerMessage, nil))
	case r.Cause != "":
		cause = errors.New(note + ": " + r.Cause)
	default:
		cause = errors.New(note)
	}
	return &failure{
		err:   newError(StatusAccessTokenError, r.Message, cause),
		until: time.UnixMilli(r.Until),
		count: r.Count,
	}
}

// refreshTime is when to renew a token that ends at expiry, as seen at now.
func refreshTime(now, expiry time.Time) time.Time {
	at := expiry.Add(-accessTokenRenewLead)
	if earliest := now.Add(accessTokenMinRenew); at.Before(earliest) {
		at = earliest
	}
	if at.After(expiry) {
		at = expiry
	}
	return at
}

// validAccessToken reports whether s can be an access token: printable
// ASCII without spaces, of a sane length.
func validAccessToken(s string) bool {
	if s == "" || len(s) > maxAccessTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// stableTokenRequest is stable_token's JSON body.
type stableTokenRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh"`
}

// stableTokenReply is stable_token's JSON reply.
type stableTokenReply struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	ErrCode     int    `json:"errcode"`
	ErrMsg      string `json:"errmsg"`
}

// fetchStableToken makes one stable_token request. Every failure is a
// StatusAccessTokenError *Error wrapping the cause.
func (c *Client) fetchStableToken(ctx context.Context, force bool) (*accessToken, error) {
	body, _ := json.Marshal(stableTokenRequest{GrantType: "client_credential", AppID: c.appID, Secret: c.secret, ForceRefresh: force})
	start := c.now()
	reply, err := c.callAPI(ctx, http.MethodPost, c.stableTokenURL, body)
	if err != nil {
		return nil, apiError(StatusAccessTokenError, "stable_token", err)
	}
	token, expiresIn, err := parseStableTokenReply(reply)
	if err != nil {
		return nil, apiError(StatusAccessTokenError, "stable_token", c.cleanWeChatError(err))
	}
	expiry := start.Add(expiresIn)
	c.stats.renewed(force)
	return &accessToken{token: token, expiry: expiry, refreshAt: refreshTime(c.now(), expiry)}, nil
}

// parseStableTokenReply parses stable_token's body: an *Error (empty, not
// JSON, no usable token or lifetime) or a *WeChatError for an errcode.
func parseStableTokenReply(body []byte) (string, time.Duration, error) {
	var r stableTokenReply
	if err := decodeReply(body, "stable_token", &r); err != nil {
		return "", 0, err
	}
	if r.ErrCode != 0 {
		return "", 0, &WeChatError{ErrCode: r.ErrCode, ErrMsg: r.ErrMsg}
	}
	if !validAccessToken(r.AccessToken) || r.ExpiresIn <= 0 || r.ExpiresIn > 86400 {
		return "", 0, newError(StatusAccessTokenError, "stable_token reply lacks a usable access_token or expires_in", nil)
	}
	return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, nil
}

// tokenError is a StatusAccessTokenError with cause.
func tokenError(cause error) *Error {
	return apiError(StatusAccessTokenError, "", cause)
}
