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

	"github.com/redis/go-redis/v9"
)

// The app's access token for WeChat's server APIs comes from the stable
// token endpoint, which, unlike the older cgi-bin/token, never ends the
// token another server holds in normal mode. One token per AppID is shared
// by every instance and every Sku through Redis:
//
//	mpauthx:{app:<appid>}:access_token        the sealed token and its expiry, PX its lifetime
//	mpauthx:{app:<appid>}:access_token:lock   the instance refreshing it (SET NX PX)
//	mpauthx:{app:<appid>}:force_spacing       present for 30 s after a forced refresh
//	mpauthx:{app:<appid>}:force_count:<date>  forced refreshes on that day (Beijing time)
//
// and kept in process in an atomic pointer, so that AccessToken costs no
// round trip until the token is due for renewal.

// Access token tuning.
const (
	// accessTokenRenewLead is how long before its expiry a token is
	// renewed: inside the last 5 minutes, when stable_token in normal mode
	// hands out the next token (both are valid until the old one ends).
	accessTokenRenewLead = 4*time.Minute + 30*time.Second
	// accessTokenMinRenew is the shortest time between two renewals of
	// one token, should WeChat hand out a token that is due at once.
	accessTokenMinRenew = 10 * time.Second
	// accessTokenRetryDelay is how long callers keep a still-valid token
	// without starting another refresh after one failed.
	accessTokenRetryDelay = 5 * time.Second
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
	// stable_token's force_refresh, enforced in Redis for all instances.
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

// accessToken is an access token as cached in process; it never changes
// once published.
type accessToken struct {
	token     string
	blob      string    // its sealed value in Redis; "" when Redis did not hold it
	expiry    time.Time // when WeChat ends it (measured from before the request)
	refreshAt time.Time // when to fetch its successor
}

// usable reports whether t can be handed out at now instead of rejected.
func (t *accessToken) usable(rejected string, now time.Time) bool {
	return t != nil && t.token != rejected && now.Before(t.expiry)
}

// accessTokens is a Client's copy of the app's access token and its
// single in-process refresh.
type accessTokens struct {
	cur     atomic.Pointer[accessToken]
	nextTry atomic.Int64 // UnixNano before which no refresh starts in the background after one failed
	// failed is the last failed renewal of a rejected token, whose
	// error renewals of the same token get until nextTry, so that a
	// WeChat rejecting every token costs no stable_token call per API
	// call.
	failed atomic.Pointer[tokenFlight]

	mu      sync.Mutex
	flight  *tokenFlight // the refresh in progress, if any
	stopped bool         // Close ran: no more refreshes
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// tokenFlight is one refresh, shared by the callers that wait for it.
type tokenFlight struct {
	rejected string // the token WeChat rejected; "" for a renewal
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

// accessTokenKey, accessTokenLockKey, forceSpacingKey and forceCountKey
// are the Redis keys of the app's access token; they share one hash slot.
func (c *Client) accessTokenKey() string     { return c.appKeyPrefix + "access_token" }
func (c *Client) accessTokenLockKey() string { return c.appKeyPrefix + "access_token:lock" }
func (c *Client) forceSpacingKey() string    { return c.appKeyPrefix + "force_spacing" }
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
// while every caller goes on with the current, still valid, token. A
// caller waits only when there is no valid token at all; if none can be
// had, the error has code StatusAccessTokenError and wraps the cause (a
// *WeChatError for an errcode). Redis being down does not stop it: each
// instance then fetches the token for itself.
//
// Use it for any WeChat server API. When such an API answers errcode
// 40001, 42001 or 40014, call RenewAccessToken with the rejected token.
func (c *Client) AccessToken(ctx context.Context) (string, error) {
	if err := c.checkOpen(); err != nil {
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
// returns the replacement; otherwise one instance forces a refresh for
// all, within WeChat's limits (30 s apart, 20 a day, counted in Redis).
// Many callers renewing the same rejected token cause one forced refresh.
// When renewing a token fails, renewals of that same token on this
// instance fail with the same error for the next 5 s without asking
// WeChat again, so that an API rejecting every token does not cost a
// stable_token call per call.
func (c *Client) RenewAccessToken(ctx context.Context, rejected string) (string, error) {
	if err := c.checkOpen(); err != nil {
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
// or one refreshed (forced when rejected is the current token) by the
// single refresh in flight. A caller holding a still-valid token does not
// wait for a renewal.
func (c *Client) accessToken(ctx context.Context, rejected string) (*accessToken, error) {
	for attempt := 0; ; attempt++ {
		now := c.now()
		t := c.at.cur.Load()
		usable := t.usable(rejected, now)
		if usable && (now.Before(t.refreshAt) || now.UnixNano() < c.at.nextTry.Load()) {
			return t, nil
		}
		if ff := c.at.failed.Load(); !usable && rejected != "" && ff != nil && ff.rejected == rejected && now.UnixNano() < c.at.nextTry.Load() {
			return nil, ff.err // renewing this token failed a moment ago
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
		if f.err != nil {
			a.failed.Store(f)
			a.nextTry.Store(c.now().Add(accessTokenRetryDelay).UnixNano())
		}
		if f.err != nil && a.ctx.Err() == nil { // Close ending it is no failure to report
			c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: refreshing the access token failed",
				slog.Int("status_code", int(Code(f.err))), slog.String("error", f.err.Error()))
		}
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

// adopt publishes t as the current token.
func (c *Client) adopt(t *accessToken) {
	c.at.cur.Store(t)
	c.at.nextTry.Store(0)
}

// refreshAccessToken makes a token other than rejected current: the one
// in Redis if it is fresh, else one fetched from WeChat by the instance
// holding the lock (forced when WeChat rejected the current one), while
// the others wait for it in Redis or go on with their still-valid token.
// With Redis down it fetches a token for this instance alone, never
// forcing.
func (c *Client) refreshAccessToken(ctx context.Context, rejected string) error {
	shared, err := c.loadSharedToken(ctx)
	if err != nil {
		return c.refreshUnshared(ctx, rejected, err)
	}
	if c.fresh(shared, rejected) {
		c.adopt(shared)
		return nil
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
		// wait for the one it stores (or for its lock to end).
		if now := c.now(); c.at.cur.Load().usable(rejected, now) {
			c.at.nextTry.Store(now.Add(accessTokenRecheck).UnixNano())
			return nil
		}
		t := time.NewTimer(accessTokenPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return tokenError(fmt.Errorf("%w: waiting for another instance's refresh", ctx.Err()))
		case <-t.C:
		}
		if shared, err = c.loadSharedToken(ctx); err != nil {
			return c.refreshUnshared(ctx, rejected, err)
		}
		if shared.usable(rejected, c.now()) {
			c.adopt(shared)
			return nil
		}
	}
	defer c.unlockAccessToken(lock)

	if shared, err = c.loadSharedToken(ctx); err != nil {
		return c.refreshUnshared(ctx, rejected, err)
	}
	if c.fresh(shared, rejected) {
		c.adopt(shared)
		return nil
	}
	force := false
	if rejected != "" && (shared == nil || shared.token == rejected) {
		expect := ""
		if shared != nil {
			expect = shared.blob
		}
		now := c.now()
		n, err := forceScript.Run(ctx, c.rdb,
			[]string{c.accessTokenKey(), c.forceSpacingKey(), c.forceCountKey(now)},
			expect, forceSpacing.Milliseconds(), forceDailyLimit, forceCountTTL.Milliseconds()).Int()
		if err != nil {
			return c.refreshUnshared(ctx, rejected, err)
		}
		switch n {
		case 0: // replaced meanwhile (a refresh that outlived its lock)
			if shared, err = c.loadSharedToken(ctx); err == nil && shared.usable(rejected, c.now()) {
				c.adopt(shared)
				return nil
			}
			return c.fetchAndShare(ctx, rejected, false, "another instance replaced it with a token this one cannot read")
		case 1:
			force = true
		default:
			// Over WeChat's limits: normal mode still helps if WeChat
			// has moved on to another token.
			why := "a forced refresh ran less than 30 s ago"
			if n == -2 {
				why = "the daily budget of 20 forced refreshes is used up"
			}
			c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: WeChat rejected the access token and a forced refresh is not allowed now",
				slog.String("reason", why))
			return c.fetchAndShare(ctx, rejected, false, why)
		}
	}
	return c.fetchAndShare(ctx, rejected, force, "")
}

// fresh reports whether the shared token t can be adopted without a
// refresh: not rejected and not yet due.
func (c *Client) fresh(t *accessToken, rejected string) bool {
	return t != nil && t.token != rejected && c.now().Before(t.refreshAt)
}

// fetchAndShare fetches a token from stable_token, stores it in Redis for
// the other instances and adopts it. A fetch that returns rejected again
// fails, with refused as the reason when a forced refresh was refused.
func (c *Client) fetchAndShare(ctx context.Context, rejected string, force bool, refused string) error {
	t, err := c.fetchAccessToken(ctx, force)
	if we := (*WeChatError)(nil); force && errors.As(err, &we) && (we.ErrCode == ErrCodeRateLimited || we.ErrCode == ErrCodeDailyQuota) {
		// WeChat's count of forced refreshes is not Redis's (Redis
		// restarted and forgot one, or another deployment forced one):
		// normal mode still helps if WeChat has moved on.
		refused = "WeChat refused a forced refresh (" + weChatErrText(we.ErrCode) + ")"
		c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: WeChat refused a forced refresh of the access token that Redis allowed",
			slog.Int("errcode", we.ErrCode))
		t, err = c.fetchAccessToken(ctx, false)
	}
	if err != nil {
		return err
	}
	if t.token == rejected {
		if refused == "" {
			refused = "stable_token handed it out again"
		}
		return tokenError(fmt.Errorf("WeChat rejected the access token and %s", refused))
	}
	ttl := t.expiry.Sub(c.now())
	if ttl > time.Millisecond {
		t.blob = c.seal.seal(encodeAccessToken(t), c.accessTokenKey())
		if err := c.rdb.Set(ctx, c.accessTokenKey(), t.blob, ttl).Err(); err != nil {
			// The token is good: use it here, and let the others
			// fetch their own.
			t.blob = ""
			c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: sharing the access token in Redis failed",
				slog.String("error", err.Error()))
		}
	}
	c.adopt(t)
	return nil
}

// refreshUnshared fetches a token for this instance alone after Redis
// failed with cause. It never forces (the limits are counted in Redis):
// a rejected token is replaced only if WeChat has moved on.
func (c *Client) refreshUnshared(ctx context.Context, rejected string, cause error) error {
	c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: Redis failed; fetching the access token without sharing it",
		slog.String("error", cause.Error()))
	t, err := c.fetchAccessToken(ctx, false)
	if err != nil {
		return err
	}
	if t.token == rejected {
		return tokenError(fmt.Errorf("WeChat rejected the access token, and Redis, which counts forced refreshes, failed: %w", cause))
	}
	c.adopt(t)
	return nil
}

// unlockAccessToken releases the refresh lock if this refresh still holds
// it, on a context of its own: the refresh's may have ended.
func (c *Client) unlockAccessToken(lock string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	unlockScript.Run(ctx, c.rdb, []string{c.accessTokenLockKey()}, lock)
}

// loadSharedToken returns the token stored in Redis, or nil when there is
// none or it cannot be opened (written under another AppSecret).
func (c *Client) loadSharedToken(ctx context.Context) (*accessToken, error) {
	blob, err := c.rdb.Get(ctx, c.accessTokenKey()).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	plain, err := c.seal.open(blob, c.accessTokenKey())
	if err != nil {
		return nil, nil
	}
	t, ok := decodeAccessToken(plain)
	if !ok {
		return nil, nil
	}
	t.blob = blob
	return t, nil
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

// fetchAccessToken makes one stable_token request. Every failure is a
// StatusAccessTokenError *Error wrapping the cause.
func (c *Client) fetchAccessToken(ctx context.Context, force bool) (*accessToken, error) {
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
