// Package mpauthx logs WeChat mini-program users in and checks their access
// tokens.
//
// A mini program calls wx.login and sends the code to your login handler,
// which calls Client.AuthorizeCode; Client.AuthorizePhone also takes the
// code of a getPhoneNumber button and records the user's phone number, and
// Client.Authorize takes the encryptedData and iv of the old profile flow.
// mpauthx exchanges the code with WeChat's code2session, registers the user
// in an SQL table (SQLite, or PostgreSQL for several instances) and returns
// an access token "<userID>|<sku>|<session>" that lives in Redis with a TTL.
// Request handlers check tokens with Client.IsTokenValid or
// Client.Middleware.
//
// AuthorizePhone, PhoneNumber and PhoneNumberOf use the app's access
// token, which Client.AccessToken also hands out for WeChat's other server
// APIs: one per app, shared by every instance through Redis and renewed by
// one instance at a time. Every login keeps the user's session key, sealed, for
// Client.Decrypt (wx.getWeRunData and other encrypted payloads) and
// Client.CheckSessionKey. See docs/phone-login.md.
//
// Config.Platform makes a Client serve another kind of app: a WeChat
// official account or website (AuthURL, then AuthorizeCode with the OAuth
// callback's code), or a QQ, Douyin or Alipay mini program. Clients that
// share a DB, a Redis and a Sku share users and tokens, so one person is
// one user whichever app they come through; docs/platforms.md lists which
// calls each platform has and what its Config needs.
//
// Client.CallAPI calls any other of WeChat's server APIs with the app's access
// token, renewing it once when WeChat rejects it. HTTPStatus maps a
// call's error to the HTTP status to answer with (the Middleware's), and
// the Middleware puts the caller's user ID and token in the request
// context (UserIDFromContext, TokenFromContext). Client.Stats counts
// logins, token checks and calls to WeChat, which Config.MeterProvider
// and Config.TracerProvider export as OpenTelemetry metrics and spans.
//
// Every failure of a Client method is, or wraps, an *Error carrying a
// status code of the Node.js original (StatusDatabaseError,
// StatusSessionKeyRequestError, …) or one added for the phone login;
// Code and ErrorResult turn an error into the code and the JSON reply the
// mini program expects. Secrets (the app secret, session keys, tokens,
// access tokens) never appear in errors, logs or Results.
//
// A Client is safe for concurrent use: create one with New and share it.
// Package mpauthxtest is a fake WeChat for tests.
//
// Runnable examples (a whole login handler, the phone login, failures)
// are in the repository's example_test.go and example_phone_test.go and
// on https://pkg.go.dev/github.com/seeda8e74ca0/mpauthx#pkg-examples;
// go doc does not print them.
//
// The repository's docs directory has the long-form pages: operations.md
// (storage layout, Redis ACLs, several instances, failure behaviour,
// metrics and traces),
// phone-login.md, localcache.md and performance.md; SECURITY.md has the
// threat model.
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
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Client. AppID, AppSecret, Sku and DB are required;
// the zero value of every other field means its default.
type Config struct {
	// AppID and AppSecret are the app's credentials (required; Alipay
	// apps have no AppSecret and sign with PrivateKey instead). Read
	// AppSecret from the environment or a secret store.
	AppID     string
	AppSecret string
	// Sku names the product the tokens are for (required): at most 256
	// bytes of printable UTF-8, without '|' and without spaces at either
	// end. Tokens of another Sku are not valid for this Client.
	Sku string
	// TokenTTL is how long a token lives from its issue or refresh; 0 means
	// DefaultTokenTTL (72 h). Negative values and values under a
	// millisecond are refused.
	TokenTTL time.Duration
	// Redis holds the tokens: a *redis.Client, *redis.ClusterClient or
	// *redis.Ring, which the Client never closes. Give it
	// ContextTimeoutEnabled: true, MaxRetries: 1 and DialerRetries: 1, so
	// that calls report a Redis that is down within milliseconds, and keep
	// its ReadTimeout and WriteTimeout finite: they bound the batches in
	// which concurrent calls share round trips. A Redis user with an ACL
	// needs the commands listed in docs/operations.md.
	//
	// Nil means New dials RedisAddr with RedisPassword and those options,
	// and Close closes that client.
	Redis         redis.UniversalClient
	RedisAddr     string // used only when Redis is nil; "" means DefaultRedisAddr
	RedisPassword string // used only when Redis is nil
	// DB holds the user table (required): open it with OpenSQLite (one
	// machine) or OpenPostgres (several instances), or create the table
	// yourself with Schema or PostgresSchema. Its driver must be
	// github.com/mattn/go-sqlite3 ("sqlite3") or
	// github.com/jackc/pgx/v5/stdlib ("pgx"). The Client never closes it.
	DB *sql.DB
	// APIBase is the platform's API server: "" means the platform's own
	// (DefaultAPIBase for WeChat, DefaultQQAPIBase, DefaultDouyinAPIBase
	// and DefaultDouyinOpenAPIBase, DefaultAlipayAPIBase). When set, every
	// endpoint of the platform is under it, AuthURL's page included: set
	// it to an mpauthxtest.Server's URL in tests.
	APIBase string
	// HTTPClient calls WeChat: nil means a client with a
	// DefaultHTTPTimeout timeout that keeps enough idle connections for
	// many concurrent logins (Close closes them). Whichever client,
	// redirects are not followed, since they would carry the AppSecret to
	// another host: New uses a copy of yours that refuses them, and a 3xx
	// reply fails the call like any reply other than 200. The copy's
	// transport wraps yours to count (Stats) and trace (TracerProvider)
	// each request.
	HTTPClient *http.Client
	// Logger receives one line per failed call, never with a secret or a
	// token: Warn for failures of Redis, SQL or WeChat, Info for an invalid
	// or used code or a user who must log in again, nothing for the
	// caller's own mistakes and cancellations. Nil means no logging.
	Logger *slog.Logger
	// LocalCache is how many tokens IsTokenValid may keep in process, kept
	// current by Redis itself (server-assisted client-side caching); 0
	// means off. A repeated check of a live token is then answered without
	// a round trip; a token revoked or refreshed by any instance stops
	// validating everywhere within 50 ms, and an expired one at its expiry
	// (docs/localcache.md has the bound and the figures). Only live tokens
	// are cached, so unknown or random tokens cannot fill it.
	//
	// It needs a *redis.Client (a server or a Sentinel failover client)
	// on Redis 6 or later whose user may run CLIENT ID, CLIENT TRACKING,
	// CLIENT SETNAME, SUBSCRIBE to __redis__:invalidate, PING and PTTL,
	// and GET and SET of a canary key under mpauthx: (which catches
	// SWAPDB); the Client opens two more connections for it. Elsewhere (a
	// Cluster, a Ring, miniredis, an older server, a provider without
	// CLIENT TRACKING) checks read Redis as without it, and the Logger
	// says why once.
	LocalCache int

	// Platform is the kind of app this Client serves; "" means
	// WeChatMiniProgram. docs/platforms.md lists what each platform needs
	// here and which calls it has.
	Platform Platform
	// PrivateKey is the app's RSA private key, PEM (PKCS#1 or PKCS#8) or
	// the bare base64 the platform's console hands out: Alipay signs its
	// requests with it (AppSecret is unused there), Douyin decrypts phone
	// numbers with it.
	PrivateKey string
	// AlipayPublicKey is Alipay's RSA public key (PEM or bare base64),
	// which verifies every Alipay reply. An Alipay Client requires it and
	// PrivateKey, RSA2 keys of 2048 bits or more (docs/alipay.md).
	AlipayPublicKey string
	// AESKey is Alipay's base64 content key, which decrypts the response
	// of my.getPhoneNumber; an Alipay Client without it fails
	// PhoneNumber and AuthorizePhone with StatusPhoneNumberError.
	AESKey string
	// LinkByPhone lets a phone login whose identifiers match nobody find
	// the user holding that verified phone number, so that one person
	// reaches one account across platforms. Off by default: numbers are
	// recycled in China (docs/identities.md).
	LinkByPhone bool
	// DataKeys seal personal data at rest (phone numbers): base64 of 32
	// random bytes each; the first seals, all open, so keys can be
	// rotated. Nil keeps phone numbers in clear (docs/operations.md).
	DataKeys []string

	// MeterProvider receives the Stats counters as OpenTelemetry metrics
	// (observable counters, read when the SDK collects), and
	// TracerProvider a span per login and per HTTP request to the
	// platform; nil means otel's global providers, which do nothing
	// until the application sets them. No attribute holds a secret, a
	// token, a code, a phone number or a user's ID. docs/operations.md
	// lists the metrics and wires them to Prometheus.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// String returns the Config without its secrets: AppSecret reads
// REDACTED; RedisPassword, PrivateKey, AESKey, DataKeys, Redis, DB,
// HTTPClient and Logger are left out, and the password of APIBase's
// userinfo is masked.
//
// fmt uses String (and GoString for %#v) when it prints a Config or
// *Config, also one held in an exported field, a slice or a map; slog uses
// LogValue when a Config or *Config is an attribute's value. Neither can
// call methods on an unexported field: a struct of yours that keeps a
// Config in an unexported field prints AppSecret, RedisPassword,
// PrivateKey and AESKey in clear with %v or %+v, and so does slog. encoding/json uses none of these
// methods: json.Marshal of a Config, or of a struct holding one (as slog's
// JSONHandler does with a struct attribute), includes the secrets. Do not
// print or log such structs, or give them a String (and LogValue) method
// of their own.
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
	platform           Platform // never ""
	linkByPhone        bool
	ttl                time.Duration
	apiBase            string // APIBase without a trailing '/'
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
	replicas           replicaWatch  // when a primary last listed a replica (replicate.go)
	store              *store
	log                *slog.Logger
	platformConfig               // the endpoints and keys of the other platforms
	stats              *counters // Stats
	obs                *observer // OpenTelemetry

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
	case !cfg.Platform.known():
		return nil, fmt.Errorf("mpauthx: Config.Platform %q is not one of the platforms", cfg.Platform)
	}
	if err := checkPlatform(&cfg); err != nil {
		return nil, err
	}
	base := cfg.APIBase
	if base == "" {
		base = defaultAPIBase(cfg.Platform)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("mpauthx: Config.APIBase %q is not an http(s) URL without a query", redactURL(base))
	}
	pc, err := newPlatformConfig(&cfg, strings.TrimRight(base, "/"), cfg.APIBase != "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableCheckTimeout)
	defer cancel()
	st, err := newStore(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	st.linkByPhone = cfg.LinkByPhone
	base = strings.TrimRight(base, "/")
	c := &Client{
		appID:           cfg.AppID,
		platform:        cfg.Platform.normalize(),
		linkByPhone:     cfg.LinkByPhone,
		secret:          cfg.AppSecret,
		sku:             cfg.Sku,
		ttl:             cfg.TokenTTL,
		apiBase:         base,
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
		platformConfig:  pc,
		stats:           newCounters(),
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
	if err := c.observe(cfg); err != nil {
		st.close()
		return nil, err
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

// Close releases what New opened: the Redis client New dialed, if any,
// the connection of the local cache, the idle connections of the default
// HTTP client, the statements New prepared, and the goroutines that batch
// Redis calls and renew the access token. It never closes Config.Redis or
// Config.DB. It waits for the calls in flight to Redis and SQL (give calls
// a ctx that ends) and fails the token checks and profile writes still
// queued. It is idempotent.
//
// Afterwards every method that does I/O fails with an *Error (code
// StatusUnknownError) wrapping ErrClosed, and the Middleware answers 503
// with that error's Result; ExtractOpenID and ExtractSku keep working.
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
		err = errors.Join(err, c.store.close(), c.obs.close())
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
	if code == StatusSessionKeyMissing || codeRejected(err) {
		level = slog.LevelInfo
	}
	c.log.LogAttrs(ctx, level, "mpauthx: call failed",
		slog.Int("status_code", int(code)), slog.String("error", err.Error()))
}
