// Package mpauthx logs WeChat mini-program users in and checks their access
// tokens.
//
// A mini program calls wx.login and sends the code (and, for the old
// profile flow, encryptedData and iv) to your login handler, which calls
// Client.Authorize or Client.AuthorizeCode. mpauthx exchanges the code with
// WeChat's code2session, decrypts and checks the profile, registers the user
// in an SQL table and returns an access token "<userID>|<sku>|<session>"
// stored in Redis with a TTL. Request handlers then check tokens with
// Client.IsTokenValid or the Client.Middleware.
//
// Most mini programs now log in with the wx.login code alone and ask for
// the user's phone number with a getPhoneNumber button: Client.AuthorizePhone
// does both in one call and records the number on the user's row. It uses
// the app's access token, which Client.AccessToken also hands out for
// WeChat's other server APIs: fetched from stable_token, shared by every
// instance through Redis and kept in process, renewed by one instance at a
// time. Every login also keeps the user's session key, sealed, for
// Client.Decrypt (wx.getWeRunData and other encrypted payloads) and
// Client.CheckSessionKey. See docs/phone-login.md.
//
// Every failure is an *Error carrying one of the status codes of the Node.js
// original (StatusDatabaseError, StatusSessionKeyRequestError, …); Code and
// ErrorResult turn an error into the code and the JSON reply the mini program
// expects. Secrets (the app secret, session keys, tokens) never appear in
// errors or logs.
//
// The package is safe for concurrent use: a busy backend shares one Client
// between all its goroutines.
package mpauthx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures a Client. Zero values mean the documented defaults;
// AppID, AppSecret, Sku and DB are required.
type Config struct {
	// AppID and AppSecret are the mini program's credentials (required).
	AppID     string
	AppSecret string
	// Sku names the product the tokens are for (required): at most 256
	// bytes of printable UTF-8, without '|' and without spaces at either
	// end.
	// Tokens of another Sku are not valid for this Client.
	Sku string
	// TokenTTL is the lifetime of a token: 0 means DefaultTokenTTL (72 h).
	// Negative values and values under a millisecond are refused.
	TokenTTL time.Duration
	// Redis stores the tokens: a *redis.Client, *redis.ClusterClient or
	// *redis.Ring. The Client never closes it. When nil, New dials
	// RedisAddr (default DefaultRedisAddr) with RedisPassword, and Close
	// closes that connection.
	//
	// Every call returns when its ctx ends, whatever the client's options;
	// still give your own client ContextTimeoutEnabled: true, or go-redis
	// keeps a hung Redis's connections busy until its own socket timeouts,
	// and consider MaxRetries: 1 and DialerRetries: 1, or each
	// call takes over a second to report that Redis is down. The client
	// New dials is set up this way.
	//
	// Concurrent IsTokenValid calls share round trips through mpauthx's
	// own batcher, made at New: one MGET per batch on a *redis.Client,
	// one pipeline of GETs on a *redis.ClusterClient or *redis.Ring, sent
	// on this client. The logins' token script goes through a private
	// go-redis automatic pipeline made at New: on a *redis.Client it
	// shares the client's connections and the hooks added before New; on
	// a *redis.ClusterClient it is a second client with the same options,
	// its own connections and none of your hooks. A *redis.Ring cannot
	// autopipeline: each login's script is its own round trip. Both send
	// their batches on a context of their own, so that every call can
	// return when its ctx ends: ContextTimeoutEnabled does not bound them
	// (the client's ReadTimeout and WriteTimeout do; keep them finite),
	// and hooks see them without the call's ctx.
	//
	// MGET needs the mget command if your Redis user has an ACL. A batch
	// on a Cluster or Ring waits for its slowest node.
	//
	// Close fails the checks still queued (ErrClosed) and waits for the
	// batches in flight: the checks' up to your ReadTimeout and
	// WriteTimeout per attempt, the pipeline's up to go-redis's own limit
	// (30 s) when Redis hangs.
	Redis         redis.UniversalClient
	RedisAddr     string
	RedisPassword string
	// DB holds the user table (required): open it with OpenSQLite (or
	// OpenPostgres, for a table shared by several instances), or create
	// the table yourself with Schema (PostgresSchema). New detects the SQL
	// dialect from the driver: github.com/mattn/go-sqlite3 ("sqlite3") or
	// github.com/jackc/pgx/v5/stdlib ("pgx"). The Client never closes it.
	DB *sql.DB
	// APIBase is WeChat's API server: "" means DefaultAPIBase. Point it at
	// an mpauthxtest.Server in tests.
	APIBase string
	// HTTPClient calls WeChat: nil means a client with a
	// DefaultHTTPTimeout timeout that keeps enough idle connections to
	// WeChat for many concurrent logins (Close closes them).
	//
	// Redirects are never followed, whichever client: WeChat's API does
	// not redirect, and following one would send the request's query (the
	// AppSecret, the user's code) to the new host, in its URL and in the
	// Referer header. New uses a copy of HTTPClient whose CheckRedirect
	// refuses them (your client is left as it is; its Transport, Jar and
	// Timeout are shared), so a 3xx reply fails the call like any reply
	// other than 200 (StatusHTTPError inside StatusSessionKeyRequestError).
	HTTPClient *http.Client
	// Logger receives a line per failed call (never a secret or token): Warn
	// for failures of Redis, SQL or WeChat, Info for an invalid or used
	// code or a user who must log in again, nothing for the caller's own
	// mistakes and cancellations. nil means no logging.
	Logger *slog.Logger
	// LocalCache is how many tokens IsTokenValid keeps in process, kept
	// current by Redis itself (server-assisted client-side caching);
	// 0 means off. A repeated check of a live token is then answered
	// without a round trip. A token revoked or refreshed by any instance
	// stops validating everywhere as soon as Redis's invalidation arrives
	// (measured on loopback: p99 about 0.2 ms), and within 50 ms of
	// Redis executing the write even when the link that carries the
	// invalidations stalls or breaks (a break also empties the cache
	// until the link is back); an expired one no later than its expiry.
	// Only live tokens are cached, so unknown or random tokens cannot
	// fill it; at most LocalCache entries are kept.
	//
	// It needs a *redis.Client (a server or a Sentinel failover client)
	// on Redis 6 or later that allows CLIENT ID, CLIENT TRACKING, CLIENT
	// SETNAME, SUBSCRIBE to __redis__:invalidate, PING and PTTL: the
	// Client opens one more connection for it, named mpauthx-localcache.
	// Elsewhere (a Cluster, a Ring, miniredis, an older server, a
	// provider without CLIENT TRACKING) checks read Redis as without it,
	// and the Logger says why once, at Warn.
	//
	// mpauthx tracks the keys itself (BCAST tracking of the mpauthx:
	// prefix, with a lease renewed by PINGs on the link) rather than with
	// go-redis's client-side cache (Options.ClientSideCacheConfig), whose
	// hit measured 3 to 3.5 times as long (0.7 µs against 0.2 µs in one
	// run), with 5 allocations against none, and which keeps entries past
	// their key's TTL and caches misses. See docs/localcache.md for the
	// design, the bound and the figures.
	LocalCache int
}

// String returns the Config without its secrets: AppSecret reads
// REDACTED, RedisPassword, Redis, DB, HTTPClient and Logger are left out,
// and the password of APIBase's userinfo is masked.
//
// fmt uses String (and GoString for %#v), and slog uses LogValue, when they
// are given a Config or *Config, or a struct holding one in an exported
// field. They cannot call methods on an unexported field: printing a
// struct of yours that keeps a Config in an unexported field with %v or
// %+v prints AppSecret and RedisPassword in clear, and so does slog's
// default formatting of it. Do not print such a struct, or give it a
// String (and LogValue) method of its own.
func (cfg Config) String() string {
	return fmt.Sprintf("mpauthx.Config{AppID:%q AppSecret:REDACTED Sku:%q TokenTTL:%v RedisAddr:%q APIBase:%q}",
		cfg.AppID, cfg.Sku, cfg.TokenTTL, cfg.RedisAddr, redactURL(cfg.APIBase))
}

// GoString implements fmt.GoStringer, so that %#v redacts the secrets too.
func (cfg Config) GoString() string { return cfg.String() }

// LogValue implements slog.LogValuer with the redacted String.
func (cfg Config) LogValue() slog.Value {
	return slog.StringValue(cfg.String())
}

// refuseRedirect is the CheckRedirect of the Client's HTTP client. WeChat's
// API never redirects, and following a redirect would carry the request's
// query (the AppSecret, the user's code) to another host, in the new URL
// and in the Referer header. The 3xx reply is returned as it is, and
// fails as any reply other than 200 does.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// maxIdleWeChatConns is how many idle connections to WeChat the default
// HTTP client keeps: more than the logins a busy server has in flight.
const maxIdleWeChatConns = 256

// Client logs users in and checks their tokens. It is safe for concurrent
// use; create one with New and share it.
type Client struct {
	appID, secret, sku string
	ttl                time.Duration
	sessionURL         string
	stableTokenURL     string // WeChat's APIs that take the access token
	phoneURL           string
	checkSessionURL    string
	appKeyPrefix       string           // the prefix of the app's Redis keys, with its hash tag
	at                 *accessTokens    // the app's access token, shared through Redis
	seal               *sealer          // seals what is kept at rest
	clock              func() time.Time // the access token's clock; nil means time.Now (tests set it)
	hc                 *http.Client
	ownTransport       *http.Transport // New made hc's transport: Close closes its idle connections
	rdb                redis.UniversalClient
	ownRedis           bool          // New dialed rdb: Close closes it
	pipe               *pipeline     // coalesces the logins' scripts
	checks             *checkBatcher // coalesces IsTokenValid's reads
	cache              *localCache   // Config.LocalCache; nil when off
	store              *store
	log                *slog.Logger

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and returns a Client. It verifies that cfg.DB holds the
// user table (and says how to create it if not) but does not contact Redis
// or WeChat: a Redis that is down at start-up fails calls with
// StatusDatabaseError until it comes up. Configuration mistakes are plain
// errors naming the field.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.AppID == "":
		return nil, errors.New("mpauthx: Config.AppID is required")
	case cfg.AppSecret == "":
		return nil, errors.New("mpauthx: Config.AppSecret is required")
	case cfg.Sku == "":
		return nil, errors.New("mpauthx: Config.Sku is required")
	case !validUserID(cfg.Sku):
		return nil, errors.New("mpauthx: Config.Sku must be at most 256 bytes of printable UTF-8, without '|' and without spaces at either end")
	case isNilRedis(cfg.Redis):
		return nil, errors.New("mpauthx: Config.Redis holds a nil client; leave it nil to have New dial RedisAddr")
	case cfg.TokenTTL < 0:
		return nil, errors.New("mpauthx: Config.TokenTTL must not be negative")
	case cfg.TokenTTL > 0 && cfg.TokenTTL < time.Millisecond:
		return nil, errors.New("mpauthx: Config.TokenTTL must be at least 1ms")
	case cfg.LocalCache < 0:
		return nil, errors.New("mpauthx: Config.LocalCache must not be negative")
	case cfg.DB == nil:
		return nil, errors.New("mpauthx: Config.DB is required (see OpenSQLite)")
	}
	base := cfg.APIBase
	if base == "" {
		base = DefaultAPIBase
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("mpauthx: Config.APIBase %q is not an http(s) URL without a query", redactURL(base))
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableCheckTimeout)
	defer cancel()
	st, err := newStore(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	base = strings.TrimRight(base, "/")
	c := &Client{
		appID:           cfg.AppID,
		secret:          cfg.AppSecret,
		sku:             cfg.Sku,
		ttl:             cfg.TokenTTL,
		sessionURL:      base + "/sns/jscode2session",
		stableTokenURL:  base + "/cgi-bin/stable_token",
		phoneURL:        base + "/wxa/business/getuserphonenumber",
		checkSessionURL: base + "/wxa/checksession",
		appKeyPrefix:    keyPrefix + "{app:" + cfg.AppID + "}:",
		at:              newAccessTokens(),
		seal:            newSealer(cfg.AppSecret, cfg.AppID),
		hc:              cfg.HTTPClient,
		rdb:             cfg.Redis,
		store:           st,
		log:             cfg.Logger,
	}
	if c.ttl == 0 {
		c.ttl = DefaultTokenTTL
	}
	if c.hc != nil {
		// A copy, so that the caller's own client keeps its CheckRedirect.
		hc := *c.hc
		hc.CheckRedirect = refuseRedirect
		c.hc = &hc
	} else {
		c.hc = &http.Client{Timeout: DefaultHTTPTimeout, CheckRedirect: refuseRedirect}
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			// The default transport keeps 2 idle connections per host:
			// with more logins in flight, each of the others would dial
			// (and later close) a connection of its own.
			c.ownTransport = dt.Clone()
			c.ownTransport.MaxIdleConns = maxIdleWeChatConns
			c.ownTransport.MaxIdleConnsPerHost = maxIdleWeChatConns
			c.hc.Transport = c.ownTransport
		}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.rdb == nil {
		addr := cfg.RedisAddr
		if addr == "" {
			addr = DefaultRedisAddr
		}
		c.rdb = redis.NewClient(&redis.Options{
			Addr:     addr,
			Password: cfg.RedisPassword,
			// Fail fast while Redis is down: go-redis's defaults (3
			// retries of each command, 5 of each dial, with backoff) make
			// every call take well over a second before it reports 6000.
			// One retry still rides over a single dropped connection,
			// such as after a Redis restart.
			MaxRetries:    1,
			DialerRetries: 1,
			// Honour each call's ctx deadline on the socket too, so that
			// a hung Redis cannot hold a call past its ctx.
			ContextTimeoutEnabled: true,
		})
		c.ownRedis = true
	}
	c.pipe = newPipeline(c.rdb)
	c.checks = newCheckBatcher(c.rdb)
	if cfg.LocalCache > 0 {
		c.cache = newLocalCache(c.rdb, c.sku, cfg.LocalCache, c.log)
	}
	return c, nil
}

// String describes c without its secrets, so that printing or logging a
// *Client does not leak them.
func (c *Client) String() string {
	return fmt.Sprintf("mpauthx.Client{AppID:%q Sku:%q TokenTTL:%v}", c.appID, c.sku, c.ttl)
}

// GoString implements fmt.GoStringer, so that %#v redacts the secret too.
func (c *Client) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the redacted String.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// isNilRedis reports whether r holds a nil pointer of a go-redis client
// type: a nil client in a non-nil interface, which New must refuse rather
// than dial RedisAddr or panic later.
func isNilRedis(r redis.UniversalClient) bool {
	switch r := r.(type) {
	case *redis.Client:
		return r == nil
	case *redis.ClusterClient:
		return r == nil
	case *redis.Ring:
		return r == nil
	}
	return false
}

// Close releases what New opened: the access token's refresh in flight,
// the local cache and its link, the batcher that coalesces IsTokenValid's
// reads, the pipeline of the logins' token script, the idle connections
// of the default HTTP client, the statements New prepared on Config.DB
// and the Redis connection New dialed, if any. It never closes
// Config.Redis or Config.DB. It waits for
// the SQL statements in flight (give calls a ctx that ends) and the token
// checks' batches in flight, and drops the profile writes and token checks
// still queued. It is idempotent. Afterwards Authorize,
// AuthorizeCode, RefreshToken, IsTokenValid and RevokeToken fail with an
// *Error (code StatusUnknownError) wrapping ErrClosed, and the Middleware
// answers 503 with that error's Result; ExtractOpenID and ExtractSku,
// which do no I/O, keep working.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.at.close()
		err := c.cache.close()
		c.checks.close()
		err = errors.Join(err, c.pipe.close())
		if c.ownTransport != nil {
			c.ownTransport.CloseIdleConnections()
		}
		err = errors.Join(err, c.store.close())
		if c.ownRedis {
			err = errors.Join(err, c.rdb.Close())
		}
		c.closeErr = err
	})
	return c.closeErr
}

// checkOpen fails once Close has been called.
func (c *Client) checkOpen() error {
	if c.closed.Load() {
		return errClosed()
	}
	return nil
}

// errClosed is the error of a call made after Close.
func errClosed() *Error { return newError(StatusUnknownError, "client is closed", ErrClosed) }

// fail logs err and returns it with its Result, so that a handler can send
// the Result as it is.
func (c *Client) fail(ctx context.Context, err error) (Result, error) {
	c.logFailure(ctx, err)
	return ErrorResult(err), err
}

// logFailure logs a failure. Errors never hold secrets.
//
// A failure that is the caller's (a missing argument, an unknown user, a
// ctx the caller cancelled) is not logged; an invalid or already used
// code (a login button tapped twice) and a user who must log in again
// (StatusSessionKeyMissing) are logged at Info; the rest, which
// point at the service, at Warn.
func (c *Client) logFailure(ctx context.Context, err error) {
	code := Code(err)
	if code == StatusRequiredParamsMissing || code == StatusUserNotExist || errors.Is(err, context.Canceled) {
		return
	}
	level := slog.LevelWarn
	var we *WeChatError
	if code == StatusSessionKeyMissing || errors.As(err, &we) && (we.ErrCode == ErrCodeInvalidCode || we.ErrCode == ErrCodeCodeUsed) {
		level = slog.LevelInfo
	}
	c.log.LogAttrs(ctx, level, "mpauthx: call failed",
		slog.Int("status_code", int(code)), slog.String("error", err.Error()))
}
