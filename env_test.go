package mpauthx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// The Redis servers the suite runs against: always an in-process miniredis;
// also a real server when MPAUTHX_REDIS_ADDR is set, and a Redis Cluster
// when MPAUTHX_REDIS_CLUSTER holds its comma-separated seed addresses. When
// MPAUTHX_POSTGRES_DSN is set, every backend runs again with the user table
// in PostgreSQL (postgres_test.go).
const (
	envRedisAddr    = "MPAUTHX_REDIS_ADDR"
	envRedisCluster = "MPAUTHX_REDIS_CLUSTER"
	// envBackendsUsedDir names a directory where the suite leaves an
	// empty file per real backend it used (redis, cluster, postgres), so
	// that CI can tell a backend that ran from one that was skipped.
	envBackendsUsedDir = "MPAUTHX_BACKENDS_USED_DIR"
)

// markUsed records in envBackendsUsedDir, when it is set, that this run
// used the backend name.
func markUsed(t testing.TB, name string) {
	t.Helper()
	if dir := os.Getenv(envBackendsUsedDir); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatalf("recording the use of %s: %v", name, err)
		}
	}
}

// backend opens one kind of Redis for a test.
type backend struct {
	name string
	open func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis)
}

// backends lists the Redis servers available to this run.
func backends() []backend {
	bs := []backend{{name: "miniredis", open: func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		return rdb, mr
	}}}
	if addr := os.Getenv(envRedisAddr); addr != "" {
		bs = append(bs, backend{name: "redis", open: func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
			markUsed(t, "redis")
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { rdb.Close() })
			return rdb, nil
		}})
	}
	if addrs := os.Getenv(envRedisCluster); addrs != "" {
		bs = append(bs, backend{name: "cluster", open: func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
			markUsed(t, "cluster")
			rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
			t.Cleanup(func() { rdb.Close() })
			return rdb, nil
		}})
	}
	return bs
}

// ringBackend is a *redis.Ring of one miniredis shard: go-redis cannot
// autopipeline a Ring, so mpauthx sends its commands one by one.
var ringBackend = backend{name: "ring", open: func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
	mr := miniredis.RunT(t)
	rdb := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": mr.Addr()}})
	t.Cleanup(func() { rdb.Close() })
	return rdb, mr
}}

// loopback is a listener on a loopback port for a fake server. It closes
// the listener and every connection it was given when the test ends, then
// waits for the goroutines started with its wg.
type loopback struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newLoopback(t *testing.T) *loopback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &loopback{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		l.closed = true
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

// addr is the listener's host:port.
func (l *loopback) addr() string { return l.ln.Addr().String() }

// keep has c closed when the test ends, or at once if it has ended.
func (l *loopback) keep(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return
	}
	l.conns = append(l.conns, c)
}

// serve accepts connections until the test ends and runs handle on a
// goroutine of its own for each.
func (l *loopback) serve(handle func(net.Conn)) {
	l.wg.Go(func() {
		for {
			conn, err := l.ln.Accept()
			if err != nil {
				return
			}
			l.keep(conn)
			l.wg.Go(func() { handle(conn) })
		}
	})
}

// tempSQLite opens a user table in a new SQLite file of t's, closed when
// t ends.
func tempSQLite(t testing.TB) *sql.DB {
	t.Helper()
	db, err := mpauthx.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// env is one test's world: a fake WeChat, a Redis, a SQLite file and a
// Client using them.
type env struct {
	wx  *mpauthxtest.Server
	rdb redis.UniversalClient
	mr  *miniredis.Miniredis // nil on a real Redis
	db  *sql.DB
	cfg mpauthx.Config
	c   *mpauthx.Client
}

// forEachRedis runs f in a subtest per backend, each with a fresh env
// whose Config tweak may change before New.
func forEachRedis(t *testing.T, tweak func(*mpauthx.Config), f func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			f(t, newEnv(t, b, tweak))
		})
	}
	if os.Getenv(envPostgresDSN) != "" {
		t.Run("postgres", func(t *testing.T) {
			forEachRedisOnPostgres(t, tweak, f)
		})
	}
}

// newEnv builds an env on backend b. Each env has its own random Sku, so
// tests sharing a real Redis never see each other's keys.
func newEnv(t *testing.T, b backend, tweak func(*mpauthx.Config)) *env {
	t.Helper()
	e := newWorld(t)
	e.rdb, e.mr = b.open(t)
	e.cfg.Redis = e.rdb
	if tweak != nil {
		tweak(&e.cfg)
	}
	e.open(t)
	return e
}

// newWorld builds the parts of an env that are not Redis's or the
// Client's: a fake WeChat, a SQLite file and a Config using them, with a
// random Sku. Set e.rdb (or e.cfg.RedisAddr) and change e.cfg, then call
// open. Every test builds its Client this way, through newEnv or
// directly.
func newWorld(t testing.TB) *env {
	t.Helper()
	e := &env{}
	e.wx = mpauthxtest.NewServer("wx-test-"+rand.Text()[:8], "s3cr3t-app-secret-value") // an AppID of its own: tests sharing a real Redis never share an access token
	t.Cleanup(e.wx.Close)
	e.db = tempSQLite(t)
	e.cfg = mpauthx.Config{
		AppID:     e.wx.AppID,
		AppSecret: e.wx.AppSecret,
		Sku:       "sku-" + rand.Text()[:10],
		DB:        e.db,
		APIBase:   e.wx.URL,
	}
	return e
}

// open makes e.c from e.cfg; it is closed when t ends (closing it again
// is harmless).
func (e *env) open(t testing.TB) {
	t.Helper()
	c, err := mpauthx.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.c = c
}

// user registers a WeChat user with a unique openid built from name.
func (e *env) user(name string) mpauthxtest.User {
	return e.wx.AddUser(mpauthxtest.User{OpenID: "o" + name + "-" + rand.Text()[:8], NickName: name, City: "Guangzhou", Country: "CN", Province: "Guangdong", Language: "zh_CN", Gender: 1})
}

// login logs u in with Authorize and fails the test on error.
func (e *env) login(t *testing.T, u mpauthxtest.User) string {
	t.Helper()
	tok, err := e.tryLogin(context.Background(), u)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	return tok
}

// tryLogin logs u in with Authorize under ctx and returns the token.
func (e *env) tryLogin(ctx context.Context, u mpauthxtest.User) (string, error) {
	data, iv := e.wx.UserInfo(u.OpenID)
	res, err := e.c.Authorize(ctx, e.wx.Code(u.OpenID), data, iv)
	return res.Response, err
}

// key is the Redis key documented for userID's session.
func (e *env) key(userID string) string {
	return "mpauthx:{" + userID + "|" + e.cfg.Sku + "}:session"
}

// advance moves Redis's clock by d: miniredis fast-forwards, a real server
// is waited for.
func (e *env) advance(d time.Duration) {
	if e.mr != nil {
		e.mr.FastForward(d)
		return
	}
	time.Sleep(d)
}

// valid reports IsTokenValid and fails the test on error.
func (e *env) valid(t *testing.T, token string) bool {
	t.Helper()
	ok, err := e.c.IsTokenValid(context.Background(), token)
	if err != nil {
		t.Fatalf("IsTokenValid: %v", err)
	}
	return ok
}

// skuKeys returns the Redis keys of e's Sku, found with SCAN (on every
// master of a cluster). The library itself never scans; tests do, to prove
// that nothing was left behind.
func (e *env) skuKeys(t *testing.T) []string {
	t.Helper()
	return scanKeys(t, e.rdb, "mpauthx:{*|"+e.cfg.Sku+"}:session")
}

// scanKeys returns the keys of rdb matching pattern, sorted, found with
// SCAN on a *redis.Client or on every master of a *redis.ClusterClient.
func scanKeys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch r := rdb.(type) {
	case *redis.Client:
		err = scan(bg, r)
	case *redis.ClusterClient:
		err = r.ForEachMaster(bg, scan)
	default:
		t.Fatalf("cannot scan a %T", rdb)
	}
	if err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(keys)
	return keys
}

// userRows counts the rows of the user table.
func (e *env) userRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.queryRow(`SELECT count(*) FROM user`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rowExists reports whether the user table has a row for userID.
func (e *env) rowExists(t *testing.T, userID string) bool {
	t.Helper()
	var n int
	if err := e.queryRow(`SELECT count(*) FROM user WHERE openId = ?`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// client returns another Client on e's Redis and database, with e's
// Config changed by tweak; it is closed when t ends.
func (e *env) client(t *testing.T, tweak func(*mpauthx.Config)) *mpauthx.Client {
	t.Helper()
	cfg := e.cfg
	tweak(&cfg)
	c, err := mpauthx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// logBuffer collects the lines of a Logger; it is safe for concurrent
// use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset forgets what was logged so far.
func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// captureLogs returns a Logger at Debug level writing to a new logBuffer,
// as text lines, or JSON lines when asJSON. Give each Client under test a
// capture of its own, so that a check of its logs sees only its lines.
func captureLogs(asJSON bool) (*slog.Logger, *logBuffer) {
	l := &logBuffer{}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if asJSON {
		return slog.New(slog.NewJSONHandler(l, opts)), l
	}
	return slog.New(slog.NewTextHandler(l, opts)), l
}

// serveAuth sends GET /me with the Authorization header auth, as given
// (none when ""), through h and returns the reply.
func serveAuth(h http.Handler, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/me", nil)
	if auth != "" {
		req.Header["Authorization"] = []string{auth} // as sent, without net/http's checks
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
