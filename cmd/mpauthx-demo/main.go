// Command mpauthx-demo shows mpauthx logging a WeChat mini-program user in,
// and the same person through a WeChat official account as one user, with
// nothing to install: it runs an embedded Redis (miniredis), a SQLite file
// in a temporary directory (removed at exit) and a fake WeChat
// (mpauthxtest), all inside the process.
//
// Usage:
//
//	go run ./cmd/mpauthx-demo                        # walk through a login, step by step
//	go run ./cmd/mpauthx-demo -listen 127.0.0.1:8080 # serve /login, /refresh, /logout and /me for curl
//	go run ./cmd/mpauthx-demo -redis 127.0.0.1:6379  # use a real Redis instead of miniredis
//
// -redis also takes a Redis Cluster: one node's address (the cluster is
// detected) or several comma-separated seed addresses. On a real Redis the
// demo only touches keys of its own Sku, mpauthx:{<user>|demo}:session and
// :sks, and those of its app's access token, mpauthx:{app:wx-demo-app}:...,
// which expire by themselves; the walkthrough revokes the tokens it made.
//
// With -listen it serves:
//
//	POST /login     JSON or form body {code, encryptedData, iv}: Authorize, or
//	                AuthorizeCode when encryptedData and iv are absent; replies
//	                with the Result JSON {status_code, status_message, response}
//	POST /login/phone  JSON or form body {code, phoneCode}: AuthorizePhone, the
//	                phone-number login; replies with the Result JSON
//	POST /refresh   behind the Middleware: rotates the caller's own token
//	POST /logout    behind the Middleware: revokes the caller's token
//	GET  /me        behind the Middleware: {"openid": "<user ID>"}
//	GET  /debug/stats  the Client's Stats as JSON (logins by outcome,
//	                checks, calls to WeChat, access token renewals)
//	GET  /dev/code  ?openid=X: registers a fake WeChat user and returns a fresh
//	                login code with its encryptedData and iv, and a phone code
//	                (demo only: it stands in for wx.login and the
//	                getPhoneNumber button in the mini program); it also
//	                registers oa-X, the same person in the official account
//	GET  /oa/login  the official account's login: a random state in a cookie,
//	                then a redirect to AuthURL (the fake WeChat's page, which
//	                lists the account's users; ?as=oa-X picks one, standing in
//	                for the person tapping Allow)
//	GET  /oa/callback  where WeChat sends the browser back: compares the
//	                callback's state with the cookie's, then AuthorizeCode
//	                with the callback's code; replies with the Result JSON
//
// /dev/code lets whoever reaches the port log in as any user it names, so
// listen on a loopback address; the demo warns when it does not.
//
// The Redis password is read from -redis-password or, when that is empty,
// from $MPAUTHX_REDIS_PASSWORD. Exit status: 0 on success, 1 when something
// fails (such as a Redis that does not answer), 2 for a bad flag.
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

const (
	demoSku        = "demo"
	demoAppID      = "wx-demo-app"
	demoOAAppID    = "wx-demo-oa" // the official account, of the same Open Platform account
	stateCookie    = "mpauthx_demo_oauth_state"
	envPassword    = "MPAUTHX_REDIS_PASSWORD"
	shutdownGrace  = 5 * time.Second
	maxLoginBody   = 64 << 10
	defaultTimeout = 2 * time.Second
)

func main() {
	// The demo reports Redis failures itself (and mpauthx through its
	// Logger): go-redis's own log lines would only repeat them.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	code := exitCode(err)
	if code != 0 {
		fmt.Fprintln(os.Stderr, "mpauthx-demo:", err)
		if code == 2 {
			fmt.Fprintln(os.Stderr, "run 'mpauthx-demo -h' for usage")
		}
	}
	os.Exit(code)
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode maps run's error to the process exit status.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// options is the parsed command line.
type options struct {
	redisAddrs    []string // empty: embedded miniredis
	redisPassword string
	redisTimeout  time.Duration
	listen        string // empty: walk through a login
}

// run is the whole program: main only adds signals and the exit status.
// It returns flag.ErrHelp after printing the usage for -h, a *usageError
// for a bad command line, and nil when the walkthrough succeeded or the
// server shut down cleanly after ctx ended.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	// Listen first: a port in use fails before anything starts.
	var ln net.Listener
	if o.listen != "" {
		if ln, err = listen(o.listen); err != nil {
			return err
		}
		defer ln.Close()
	}
	out := &syncWriter{w: stdout}
	d, err := setup(ctx, o, out, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	if ln != nil {
		return d.serve(ctx, ln)
	}
	return d.walkthrough(ctx)
}

// listen opens the -listen address, with an error that says what to do
// when it cannot.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err // "bind: address already in use", without repeating addr
		}
		return nil, fmt.Errorf("cannot listen on %s (%v); pick another -listen address", addr, err)
	}
	return ln, nil
}

// parseFlags parses and checks the command line; the usage for -h goes to
// usageOut.
func parseFlags(args []string, usageOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mpauthx-demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run's caller prints the one-line error
	redisAddr := fs.String("redis", "", "use the Redis at `host:port` instead of an embedded miniredis; a Redis Cluster\nnode is detected, and comma-separated addresses are taken as cluster seeds")
	fs.StringVar(&o.redisPassword, "redis-password", "", "password of the -redis server (default $"+envPassword+")")
	fs.DurationVar(&o.redisTimeout, "redis-timeout", defaultTimeout, "how long to wait for the -redis server to answer PING")
	fs.StringVar(&o.listen, "listen", "", "serve /login, /refresh, /logout, /me, /debug/stats and /dev/code over HTTP on `host:port` (e.g. 127.0.0.1:8080)\ninstead of walking through a login")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: mpauthx-demo [-listen host:port] [-redis host:port[,host:port...] [-redis-password pw]]\n\n"+
			"Logs a simulated WeChat user in with mpauthx and prints each step, or with -listen\n"+
			"serves a tiny HTTP API to try with curl. Redis is embedded unless -redis is given.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(usageOut)
			fs.Usage()
			return o, err
		}
		return o, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["redis"] {
		for _, a := range strings.Split(*redisAddr, ",") {
			a = strings.TrimSpace(a)
			if err := checkHostPort(a, false); err != nil {
				return o, usagef("-redis %q: %v", *redisAddr, err)
			}
			o.redisAddrs = append(o.redisAddrs, a)
		}
	} else {
		for _, name := range []string{"redis-password", "redis-timeout"} {
			if set[name] {
				return o, usagef("-%s needs -redis (without -redis the demo embeds its own Redis)", name)
			}
		}
	}
	if o.redisTimeout <= 0 {
		return o, usagef("-redis-timeout must be positive, not %v", o.redisTimeout)
	}
	if set["listen"] {
		if err := checkHostPort(o.listen, true); err != nil {
			return o, usagef("-listen %q: %v", o.listen, err)
		}
	}
	if o.redisPassword == "" {
		o.redisPassword = os.Getenv(envPassword)
	}
	return o, nil
}

// checkHostPort checks an address of the form host:port with a numeric
// port; the host may be empty (all interfaces) and the port 0 (any free
// one) only for a listen address.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, such as 127.0.0.1:6379")
	}
	n, err := strconv.Atoi(port)
	lo := 1
	if listen {
		lo = 0
	}
	if err != nil || n < lo || n > 65535 {
		return fmt.Errorf("port %q is not a number from %d to 65535", port, lo)
	}
	if host == "" && !listen {
		return errors.New("the host is missing")
	}
	return nil
}

// demo is everything the demo runs on.
type demo struct {
	out     io.Writer
	wx      *mpauthxtest.Server
	rdb     redis.UniversalClient
	db      *sql.DB
	dbPath  string
	c       *mpauthx.Client // the mini program's
	oa      *mpauthx.Client // the official account's: same DB, Redis and Sku
	closers []func()        // run in reverse order by close
	step    int

	devMu sync.Mutex // serialises /dev/code's registration of users
}

// setup starts Redis (or connects to -redis), the SQLite file and the fake
// WeChat, and creates the mpauthx Client.
func setup(ctx context.Context, o options, out io.Writer, stderr io.Writer) (_ *demo, err error) {
	d := &demo{out: out}
	defer func() {
		if err != nil {
			d.close()
		}
	}()

	redisDesc, err := d.openRedis(ctx, o)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "mpauthx-demo-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary directory: %w", err)
	}
	d.closers = append(d.closers, func() { os.RemoveAll(dir) })
	d.dbPath = filepath.Join(dir, "users.db")
	d.db, err = mpauthx.OpenSQLite(d.dbPath)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.db.Close() })

	// The fake WeChat gets a fresh random secret: nothing secret is ever
	// written in code, not even in a demo.
	d.wx = mpauthxtest.NewServer(demoAppID, rand.Text())
	d.closers = append(d.closers, d.wx.Close)

	cfg := mpauthx.Config{
		AppID:     d.wx.AppID,
		AppSecret: d.wx.AppSecret,
		Sku:       demoSku,
		Redis:     d.rdb,
		DB:        d.db,
		APIBase:   d.wx.URL,
		Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	d.c, err = mpauthx.New(cfg)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.c.Close() })

	// The official account: another app, another Client, the same DB,
	// Redis and Sku, so the same users and tokens.
	oa := d.wx.AddApp(mpauthxtest.App{Platform: string(mpauthx.WeChatOfficialAccount), AppID: demoOAAppID, AppSecret: rand.Text()})
	cfg.Platform, cfg.AppID, cfg.AppSecret = mpauthx.WeChatOfficialAccount, oa.AppID, oa.AppSecret
	d.oa, err = mpauthx.New(cfg)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.oa.Close() })

	fmt.Fprintf(out, "mpauthx demo: everything below runs in this process; nothing talks to the real WeChat.\n")
	fmt.Fprintf(out, "  Redis:  %s\n", redisDesc)
	fmt.Fprintf(out, "  SQLite: %s (removed at exit)\n", d.dbPath)
	fmt.Fprintf(out, "  WeChat: fake code2session at %s (mpauthxtest), appid %s; official account %s\n", d.wx.URL, d.wx.AppID, demoOAAppID)
	return d, nil
}

// openRedis sets d.rdb: an embedded miniredis, or the -redis server once
// it has answered PING. It returns a description for the start-up lines.
func (d *demo) openRedis(ctx context.Context, o options) (string, error) {
	if len(o.redisAddrs) == 0 {
		mr, err := miniredis.Run()
		if err != nil {
			return "", fmt.Errorf("starting the embedded Redis: %w", err)
		}
		d.closers = append(d.closers, mr.Close)
		d.rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		d.closers = append(d.closers, func() { d.rdb.Close() })
		return "embedded miniredis at " + mr.Addr() + " (use -redis host:port for a real server)", nil
	}
	addrs := strings.Join(o.redisAddrs, ",")
	opts := &redis.UniversalOptions{
		Addrs:       o.redisAddrs,
		Password:    o.redisPassword,
		DialTimeout: o.redisTimeout,
		// Let a call's ctx bound its socket reads and writes too, so that a
		// request's deadline holds even when Redis hangs.
		ContextTimeoutEnabled: true,
	}
	cluster, err := pingRedis(ctx, *opts, o.redisTimeout)
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return "", fmt.Errorf("the Redis at %s refused PING: %w (check -redis-password or $%s)", addrs, err, envPassword)
		}
		return "", fmt.Errorf("the Redis at %s does not answer (%w); start it, or drop -redis to use the embedded one", addrs, err)
	}
	opts.IsClusterMode = cluster
	rdb := redis.NewUniversalClient(opts)
	d.rdb = rdb
	d.closers = append(d.closers, func() { rdb.Close() })
	kind := "Redis"
	if _, ok := rdb.(*redis.ClusterClient); ok {
		kind = "Redis Cluster"
	}
	return fmt.Sprintf("%s at %s (PING ok)", kind, addrs), nil
}

// pingRedis checks that the Redis of opts answers PING within timeout,
// with a throwaway client that neither retries nor redials, so that a dead
// address fails at once with one error. It reports whether the server is a
// Redis Cluster node: several addresses are seeds of one; a single one is
// asked with INFO cluster (a server that refuses INFO counts as a plain
// Redis).
func pingRedis(ctx context.Context, opts redis.UniversalOptions, timeout time.Duration) (cluster bool, err error) {
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.PoolSize = 1
	opts.ReadTimeout = timeout
	opts.WriteTimeout = timeout
	rdb := redis.NewUniversalClient(&opts)
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = rdb.Ping(pctx).Err()
	var ne net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	if err != nil && timedOut && ctx.Err() == nil {
		err = fmt.Errorf("no reply within %v: %w", timeout, err)
	}
	if err != nil || len(opts.Addrs) > 1 {
		return len(opts.Addrs) > 1, err
	}
	info, ierr := rdb.Info(pctx, "cluster").Result()
	return ierr == nil && strings.Contains(info, "cluster_enabled:1"), nil
}

// close releases everything setup opened, newest first.
func (d *demo) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// stepf prints the heading of the next numbered step.
func (d *demo) stepf(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// linef prints a line under the current step, indented to its heading's
// text.
func (d *demo) linef(format string, args ...any) {
	indent := strings.Repeat(" ", len(strconv.Itoa(d.step))+2)
	fmt.Fprintf(d.out, "%s%s\n", indent, fmt.Sprintf(format, args...))
}

// walkthrough logs a simulated user in and prints each step. It returns an
// error as soon as a step does not behave as documented.
func (d *demo) walkthrough(ctx context.Context) error {
	u := d.wx.AddUser(mpauthxtest.User{
		OpenID:   "oDemo-" + rand.Text()[:12], // unique, so runs sharing a real Redis never meet
		UnionID:  "uDemo-" + rand.Text()[:12], // the person across the apps of one Open Platform account
		NickName: "Alice", City: "Guangzhou", Province: "Guangdong",
		Country: "CN", Language: "zh_CN", Gender: 2, Phone: "13800138000",
	})
	code := d.wx.Code(u.OpenID)
	data, iv := d.wx.UserInfo(u.OpenID)

	d.stepf("The mini program calls wx.login and wx.getUserInfo and sends your backend:")
	d.linef("code          = %s  (single-use)", code)
	d.linef("encryptedData = %s...  (%d base64 bytes: the profile, AES-128-CBC)", data[:20], len(data))
	d.linef("iv            = %s", iv)

	d.stepf("res, err := c.Authorize(ctx, code, encryptedData, iv)")
	res, err := d.c.Authorize(ctx, code, data, iv)
	if err != nil {
		return fmt.Errorf("step %d, Authorize: %w", d.step, err)
	}
	token := res.Response
	userID := d.c.ExtractOpenID(token)
	d.linef("-> status_code %d %q", res.StatusCode, res.StatusMessage)
	d.linef("-> token %s", token)
	d.linef("   (a demo token, printed to show its shape <userID>|<sku>|<session>; never print or log real ones)")
	d.linef("   c.ExtractOpenID(token) = %q, c.ExtractSku(token) = %q", userID, d.c.ExtractSku(token))
	var nick, city string
	err = d.db.QueryRowContext(ctx, `SELECT nickName, city FROM user WHERE openId = ?`, userID).Scan(&nick, &city)
	if err != nil {
		return fmt.Errorf("step %d, reading the user row: %w", d.step, err)
	}
	d.linef("   SQLite user row: openId=%s nickName=%s city=%s", userID, nick, city)

	d.stepf("c.IsTokenValid(ctx, token)")
	if err := d.expectValid(ctx, token, true, "a live token"); err != nil {
		return err
	}

	d.stepf("c.Authorize(ctx, code, encryptedData, iv) again, with the same code")
	_, err = d.c.Authorize(ctx, code, data, iv)
	var we *mpauthx.WeChatError
	if mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError || !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeCodeUsed {
		return fmt.Errorf("step %d: reusing a code gave %v, want status 6008 with errcode 40163", d.step, err)
	}
	r := mpauthx.ErrorResult(err)
	d.linef("-> status_code %d %q  (codes are single-use; the INFO line on stderr is the Logger)", r.StatusCode, r.StatusMessage)

	d.stepf("The user logs in on a second device: c.AuthorizeCode(ctx, newCode)")
	res2, err := d.c.AuthorizeCode(ctx, d.wx.Code(u.OpenID))
	if err != nil {
		return fmt.Errorf("step %d, AuthorizeCode: %w", d.step, err)
	}
	if res2.Response != token {
		return fmt.Errorf("step %d: AuthorizeCode returned another token; want the live one", d.step)
	}
	d.linef("-> the same token: %t  (one session per user and Sku, shared by the user's devices)", res2.Response == token)

	d.stepf("c.RefreshToken(ctx, %q)  (a server-side call: pass only an authenticated user ID)", userID)
	res3, err := d.c.RefreshToken(ctx, userID)
	if err != nil {
		return fmt.Errorf("step %d, RefreshToken: %w", d.step, err)
	}
	newToken := res3.Response
	if newToken == token {
		return fmt.Errorf("step %d: RefreshToken returned the old token", d.step)
	}
	d.linef("-> status_code %d %q", res3.StatusCode, res3.StatusMessage)
	d.linef("-> new token %s", newToken)

	d.stepf("c.IsTokenValid(ctx, oldToken)")
	if err := d.expectValid(ctx, token, false, "replaced by the refresh"); err != nil {
		return err
	}
	d.stepf("c.IsTokenValid(ctx, newToken)")
	if err := d.expectValid(ctx, newToken, true, "the live token now"); err != nil {
		return err
	}

	d.stepf("c.RevokeToken(ctx, newToken)  (log out)")
	if err := d.c.RevokeToken(ctx, newToken); err != nil {
		return fmt.Errorf("step %d, RevokeToken: %w", d.step, err)
	}
	d.linef("-> err = nil")

	d.stepf("c.IsTokenValid(ctx, newToken)")
	if err := d.expectValid(ctx, newToken, false, "revoked"); err != nil {
		return err
	}
	if err := d.phoneLogin(ctx, u, userID); err != nil {
		return err
	}
	if err := d.officialAccount(ctx, u, userID); err != nil {
		return err
	}

	fmt.Fprintf(d.out, "\nDone: every step behaved as documented.\nNext: go run ./cmd/mpauthx-demo -listen 127.0.0.1:8080   (an HTTP API to try with curl)\n")
	return nil
}

// phoneLogin walks through today's login: the phone number, the session
// key kept for Decrypt and CheckSessionKey, and the app's access token.
func (d *demo) phoneLogin(ctx context.Context, u mpauthxtest.User, userID string) error {
	loginCode, phoneCode := d.wx.Code(u.OpenID), d.wx.PhoneCode(u.OpenID)
	d.stepf("The phone-number login: the mini program sends the code of wx.login and the one of")
	d.linef(`<button open-type="getPhoneNumber"> (single-use, valid 5 minutes):`)
	d.linef("code      = %s", loginCode)
	d.linef("phoneCode = %s", phoneCode)

	d.stepf("res, err := c.AuthorizePhone(ctx, code, phoneCode)")
	res, err := d.c.AuthorizePhone(ctx, loginCode, phoneCode)
	if err != nil {
		return fmt.Errorf("step %d, AuthorizePhone: %w", d.step, err)
	}
	token := res.Response
	if id := d.c.ExtractOpenID(token); id != userID {
		return fmt.Errorf("step %d: AuthorizePhone logged in %q, want %q", d.step, id, userID)
	}
	d.linef("-> status_code %d %q", res.StatusCode, res.StatusMessage)
	d.linef("-> the same user ID: true  (one WeChat user, one user ID, whichever login)")
	d.linef("   (the phone code was exchanged with the app's access token, fetched once from stable_token)")

	d.stepf("c.User(ctx, %q)", userID)
	user, err := d.c.User(ctx, userID)
	if err != nil {
		return fmt.Errorf("step %d, User: %w", d.step, err)
	}
	if user.Phone != u.Phone {
		return fmt.Errorf("step %d: User.Phone = %q, want %q", d.step, user.Phone, u.Phone)
	}
	d.linef("-> Phone %s, OpenID %s, NickName %s", user.Phone, user.OpenID, user.NickName)

	weRun := `{"stepInfoList":[{"timestamp":1700000000,"step":8848}],"watermark":{"timestamp":1700000000,"appid":"` + d.wx.AppID + `"}}`
	data, iv := d.wx.EncryptFor(u.OpenID, []byte(weRun))
	d.stepf("c.Decrypt(ctx, userID, encryptedData, iv)  (wx.getWeRunData's payload)")
	plain, err := d.c.Decrypt(ctx, userID, data, iv)
	if err != nil {
		return fmt.Errorf("step %d, Decrypt: %w", d.step, err)
	}
	if string(plain) != weRun {
		return fmt.Errorf("step %d: Decrypt = %s, want %s", d.step, plain, weRun)
	}
	d.linef("-> %s", plain)
	d.linef("   (with the session key of the user's last login, kept sealed in Redis as long as the token)")

	d.stepf("c.CheckSessionKey(ctx, userID)")
	ok, err := d.c.CheckSessionKey(ctx, userID)
	if err != nil || !ok {
		return fmt.Errorf("step %d, CheckSessionKey = %t, %v; want true", d.step, ok, err)
	}
	d.linef("-> true  (WeChat's checksession: the stored key is still the user's current one)")

	d.stepf("c.AccessToken(ctx)  (for any other WeChat server API)")
	at, err := d.c.AccessToken(ctx)
	if err != nil {
		return fmt.Errorf("step %d, AccessToken: %w", d.step, err)
	}
	d.linef("-> a token of %d characters; stable_token calls so far: %d", len(at), d.wx.AccessTokenRequests())
	d.linef("   (shared by every instance through Redis, renewed by one of them before it ends)")

	d.stepf("c.RevokeToken(ctx, token)  (log out: the session key goes with the token)")
	if err := d.c.RevokeToken(ctx, token); err != nil {
		return fmt.Errorf("step %d, RevokeToken: %w", d.step, err)
	}
	_, err = d.c.Decrypt(ctx, userID, data, iv)
	if mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
		return fmt.Errorf("step %d: Decrypt after RevokeToken = %v, want status 6014", d.step, err)
	}
	d.linef("-> c.Decrypt now: status_code %d %q", mpauthx.Code(err), mpauthx.ErrorResult(err).StatusMessage)
	return nil
}

// officialAccount logs the same person in through the official account:
// AuthURL, the callback's state and code, and one user ID.
func (d *demo) officialAccount(ctx context.Context, u mpauthxtest.User, userID string) error {
	oaUser := d.wx.AddUser(mpauthxtest.User{AppID: demoOAAppID, OpenID: "oOA-" + rand.Text()[:12], UnionID: u.UnionID})
	const redirect = "https://example.com/wechat/callback"
	state := rand.Text()
	d.stepf("The same person opens your official account's pages in WeChat. Your login route keeps a")
	d.linef("random state in a cookie and sends the browser to oa.AuthURL(redirectURI, state):")
	authURL := d.oa.AuthURL(redirect, state)
	d.linef("%s", authURL)

	back, err := d.wx.AuthCallback(authURL, oaUser.OpenID)
	if err != nil {
		return fmt.Errorf("step %d, the fake WeChat's page: %w", d.step, err)
	}
	cb, err := url.Parse(back)
	if err != nil {
		return fmt.Errorf("step %d, the callback: %w", d.step, err)
	}
	d.stepf("WeChat sends the browser back; the callback compares its state with the cookie's:")
	d.linef("%s", back)
	if subtle.ConstantTimeCompare([]byte(cb.Query().Get("state")), []byte(state)) != 1 {
		return fmt.Errorf("step %d: the callback's state is not the cookie's", d.step)
	}
	d.linef("-> state matches: true  (a mismatch is someone else's code: refuse it)")

	d.stepf("res, err := oa.AuthorizeCode(ctx, callbackCode)  (oa: the official account's Client)")
	res, err := d.oa.AuthorizeCode(ctx, cb.Query().Get("code"))
	if err != nil {
		return fmt.Errorf("step %d, AuthorizeCode: %w", d.step, err)
	}
	if id := d.oa.ExtractOpenID(res.Response); id != userID {
		return fmt.Errorf("step %d: the official account logged in %q, want the mini program's %q", d.step, id, userID)
	}
	d.linef("-> status_code %d %q", res.StatusCode, res.StatusMessage)
	d.linef("-> the same user ID as in the mini program: %s  (their shared unionid links them)", userID)
	if ok, err := d.c.IsTokenValid(ctx, res.Response); err != nil || !ok {
		return fmt.Errorf("step %d: the mini program's Client does not accept the token: %t, %v", d.step, ok, err)
	}
	d.linef("   the mini program's Client accepts the token too: one Sku, one session")

	d.stepf("c.User(ctx, %q).Identities", userID)
	user, err := d.c.User(ctx, userID)
	if err != nil {
		return fmt.Errorf("step %d, User: %w", d.step, err)
	}
	for _, id := range user.Identities {
		d.linef("-> %s app %s openid %s", id.Platform, id.AppID, id.OpenID)
	}
	d.linef("   (every app the person has logged in through; docs/platforms.md has the rules)")
	if err := d.c.RevokeToken(ctx, res.Response); err != nil {
		return fmt.Errorf("step %d, RevokeToken: %w", d.step, err)
	}
	return nil
}

// expectValid prints IsTokenValid's answer for token and fails unless it
// is want.
func (d *demo) expectValid(ctx context.Context, token string, want bool, why string) error {
	ok, err := d.c.IsTokenValid(ctx, token)
	if err != nil {
		return fmt.Errorf("step %d, IsTokenValid: %w", d.step, err)
	}
	d.linef("-> %t  (%s)", ok, why)
	if ok != want {
		return fmt.Errorf("step %d: IsTokenValid = %t, want %t", d.step, ok, want)
	}
	return nil
}

// serve serves the demo's HTTP API on ln until ctx ends, then shuts down
// gracefully.
func (d *demo) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           d.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	// "listening on" comes last: whoever waits for it (a test, a script)
	// then has the whole start-up text.
	fmt.Fprint(d.out, curlLines(baseURL(ln.Addr())))
	if !isLoopback(ln.Addr()) {
		fmt.Fprintf(d.out, "WARNING: %s is reachable from other machines, and /dev/code lets anyone log in\n"+
			"as any user it names. Use -listen 127.0.0.1:PORT unless that is what you want.\n", ln.Addr())
	}
	fmt.Fprintf(d.out, "Press Ctrl-C to stop.\nlistening on %s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(d.out, "shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	return nil
}

// baseURL is the URL a local curl reaches the listener at.
func baseURL(a net.Addr) string {
	host, port := "127.0.0.1", "0"
	if ta, ok := a.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
		if !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// isLoopback reports whether a listener's address is reachable only from
// this machine.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// curlLines is the walkthrough printed at start-up in -listen mode.
func curlLines(base string) string {
	const tok = `sed -E 's/.*"response":"([^"]*)".*/\1/'`
	return strings.NewReplacer("{base}", base, "{response}", tok).Replace(`
Try it with curl from another terminal:
  # 1. a fake wx.login: registers user o-alice, returns a one-time code, encryptedData and iv
  curl -s '{base}/dev/code?openid=o-alice'
  # 2. log in with them (Authorize); the token is the reply's "response"
  TOKEN=$(curl -s '{base}/dev/code?openid=o-alice' | curl -s -H 'Content-Type: application/json' -d @- {base}/login | {response}); echo "$TOKEN"
  # 3. a protected endpoint
  curl -s -H "Authorization: Bearer $TOKEN" {base}/me
  # 4. rotate your own token: the old one now gets 401, the new one works
  NEW=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" {base}/refresh | {response}); echo "$NEW"
  curl -s -H "Authorization: Bearer $TOKEN" {base}/me
  curl -s -H "Authorization: Bearer $NEW" {base}/me
  # 5. log out: the token now gets 401
  curl -s -X POST -H "Authorization: Bearer $NEW" {base}/logout
  curl -s -H "Authorization: Bearer $NEW" {base}/me
  # 6. the code-only login (AuthorizeCode), with a form body
  CODE=$(curl -s '{base}/dev/code?openid=o-bob' | sed -E 's/.*"code":"([^"]*)".*/\1/')
  curl -s --data-urlencode "code=$CODE" {base}/login
  # 7. the phone-number login (AuthorizePhone): a login code and a phone code
  curl -s '{base}/dev/code?openid=o-carol' | curl -s -H 'Content-Type: application/json' -d @- {base}/login/phone
  # 8. the official account's login (AuthURL, a state cookie, the callback); or open {base}/oa/login in a browser
  curl -s -L -c /tmp/mpauthx-demo-jar -b /tmp/mpauthx-demo-jar '{base}/oa/login?as=oa-o-alice'
  # 9. the counters: logins by outcome, checks, calls to WeChat
  curl -s {base}/debug/stats
`)
}

// routes is the demo's HTTP API.
func (d *demo) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", d.handleLogin)
	mux.HandleFunc("POST /login/phone", d.handleLoginPhone)
	mux.Handle("POST /refresh", d.c.Middleware(http.HandlerFunc(d.handleRefresh)))
	mux.Handle("POST /logout", d.c.Middleware(http.HandlerFunc(d.handleLogout)))
	mux.Handle("GET /me", d.c.Middleware(http.HandlerFunc(d.handleMe)))
	mux.HandleFunc("GET /debug/stats", d.handleStats)
	mux.HandleFunc("GET /dev/code", d.handleDevCode)
	mux.HandleFunc("GET /oa/login", d.handleOALogin)
	mux.HandleFunc("GET /oa/callback", d.handleOACallback)
	return logRequests(d.out, mux)
}

// loginRequest is the body of POST /login and POST /login/phone, as JSON
// or as a form.
type loginRequest struct {
	Code          string `json:"code"`
	EncryptedData string `json:"encryptedData"`
	IV            string `json:"iv"`
	PhoneCode     string `json:"phoneCode"`
}

// handleLogin logs a user in: Authorize with encryptedData and iv,
// AuthorizeCode without them. It replies with the Result JSON.
func (d *demo) handleLogin(w http.ResponseWriter, r *http.Request) {
	req, ok := readLogin(w, r)
	if !ok {
		return
	}
	var (
		res mpauthx.Result
		err error
	)
	if req.EncryptedData == "" && req.IV == "" {
		res, err = d.c.AuthorizeCode(r.Context(), req.Code)
	} else {
		res, err = d.c.Authorize(r.Context(), req.Code, req.EncryptedData, req.IV)
	}
	writeJSON(w, mpauthx.HTTPStatus(err), res)
}

// handleLoginPhone logs a user in with a login code and a phone code
// (AuthorizePhone). It replies with the Result JSON.
func (d *demo) handleLoginPhone(w http.ResponseWriter, r *http.Request) {
	req, ok := readLogin(w, r)
	if !ok {
		return
	}
	res, err := d.c.AuthorizePhone(r.Context(), req.Code, req.PhoneCode)
	writeJSON(w, mpauthx.HTTPStatus(err), res)
}

// readLogin reads a JSON (Content-Type application/json) or form body, or
// answers 400 with a 6001 Result and returns false.
func readLogin(w http.ResponseWriter, r *http.Request) (loginRequest, bool) {
	req, err := parseLogin(w, r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, mpauthx.Result{
			StatusCode:    mpauthx.StatusRequiredParamsMissing,
			StatusMessage: err.Error(),
		})
		return req, false
	}
	return req, true
}

// parseLogin parses a JSON (Content-Type application/json) or form body.
func parseLogin(w http.ResponseWriter, r *http.Request) (loginRequest, error) {
	var req loginRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && ct != "" {
		return req, errors.New("the Content-Type header is not a media type")
	}
	if mt == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return req, errors.New("the body is not a JSON object {code, encryptedData, iv, phoneCode}")
		}
		return req, nil
	}
	if err := r.ParseForm(); err != nil {
		return req, errors.New("the body is not a form with code, encryptedData, iv or phoneCode")
	}
	req.Code = r.PostForm.Get("code")
	req.EncryptedData = r.PostForm.Get("encryptedData")
	req.IV = r.PostForm.Get("iv")
	req.PhoneCode = r.PostForm.Get("phoneCode")
	return req, nil
}

// handleRefresh rotates the token of the caller, whom the Middleware has
// authenticated: a user can only ever refresh their own token.
func (d *demo) handleRefresh(w http.ResponseWriter, r *http.Request) {
	userID, ok := mpauthx.UserIDFromContext(r.Context())
	if !ok {
		notBehindMiddleware(w)
		return
	}
	res, err := d.c.RefreshToken(r.Context(), userID)
	writeJSON(w, mpauthx.HTTPStatus(err), res)
}

// handleLogout revokes the token the caller authenticated with (the
// Middleware keeps it in the request context). It replies with the Result
// JSON, without a token.
func (d *demo) handleLogout(w http.ResponseWriter, r *http.Request) {
	token, ok := mpauthx.TokenFromContext(r.Context())
	if !ok {
		notBehindMiddleware(w)
		return
	}
	err := d.c.RevokeToken(r.Context(), token)
	writeJSON(w, mpauthx.HTTPStatus(err), mpauthx.ErrorResult(err))
}

// handleStats replies with the Client's Stats as JSON. A real service
// would export them as metrics instead (Config.MeterProvider) and keep
// such a page off the public internet.
func (d *demo) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.c.Stats())
}

// handleMe returns the caller's user ID.
func (d *demo) handleMe(w http.ResponseWriter, r *http.Request) {
	userID, ok := mpauthx.UserIDFromContext(r.Context())
	if !ok {
		notBehindMiddleware(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"openid": userID})
}

// notBehindMiddleware answers a request that reached a protected handler
// without the Middleware in front: a mistake in routes, not the caller's.
func notBehindMiddleware(w http.ResponseWriter) {
	writeJSON(w, http.StatusInternalServerError, mpauthx.Result{
		StatusCode:    mpauthx.StatusUnknownError,
		StatusMessage: "handler not behind the Middleware",
	})
}

// devCode is the reply of GET /dev/code: a valid body for POST /login
// and for POST /login/phone.
type devCode struct {
	OpenID        string `json:"openid"`
	Code          string `json:"code"`
	EncryptedData string `json:"encryptedData"`
	IV            string `json:"iv"`
	PhoneCode     string `json:"phoneCode"`
}

// handleDevCode registers a fake WeChat user (once) and returns a fresh
// login code with the user's encryptedData and iv: what a mini program
// would get from wx.login and wx.getUserInfo.
func (d *demo) handleDevCode(w http.ResponseWriter, r *http.Request) {
	openID := r.URL.Query().Get("openid")
	if openID == "" {
		openID = "o-curl-user"
	}
	if !validDemoOpenID(openID) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "openid must be 1 to 64 letters, digits, '-' or '_'"})
		return
	}
	d.devMu.Lock()
	if _, ok := d.wx.User(openID); !ok {
		d.wx.AddUser(mpauthxtest.User{OpenID: openID, NickName: openID, City: "Shenzhen", Country: "CN", Language: "zh_CN", Phone: "13800138000"})
		d.wx.AddUser(mpauthxtest.User{AppID: demoOAAppID, OpenID: "oa-" + openID})
	}
	code := d.wx.Code(openID)
	data, iv := d.wx.UserInfo(openID)
	phoneCode := d.wx.PhoneCode(openID)
	d.devMu.Unlock()
	writeJSON(w, http.StatusOK, devCode{OpenID: openID, Code: code, EncryptedData: data, IV: iv, PhoneCode: phoneCode})
}

// handleOALogin starts the official account's login: it keeps a random
// state in a cookie and redirects the browser to AuthURL, with the
// callback on this server. ?as=oa-X makes the fake WeChat's page log oa-X
// in at once (for curl; a browser shows the page).
func (d *demo) handleOALogin(w http.ResponseWriter, r *http.Request) {
	state := rand.Text()
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie, Value: state, Path: "/oa/", MaxAge: 600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, // and Secure, behind HTTPS
	})
	target := d.oa.AuthURL("http://"+r.Host+"/oa/callback", state)
	if as := r.URL.Query().Get("as"); as != "" && validDemoOpenID(as) {
		page, fragment, _ := strings.Cut(target, "#")
		target = page + "&openid=" + url.QueryEscape(as) + "#" + fragment
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// handleOACallback is where WeChat sends the browser back: it checks the
// callback's state against the cookie's (a mismatch is a code someone
// else obtained: CSRF), then logs the person in with the code.
func (d *demo) handleOACallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cookie, err := r.Cookie(stateCookie)
	if err != nil || cookie.Value == "" || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(q.Get("state"))) != 1 {
		writeJSON(w, http.StatusBadRequest, mpauthx.Result{
			StatusCode: mpauthx.StatusRequiredParamsMissing, StatusMessage: "state does not match this browser's login"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Path: "/oa/", MaxAge: -1})
	if q.Get("code") == "" {
		writeJSON(w, http.StatusUnauthorized, mpauthx.Result{
			StatusCode: mpauthx.StatusRequiredParamsMissing, StatusMessage: "the person did not allow the login"})
		return
	}
	res, err := d.oa.AuthorizeCode(r.Context(), q.Get("code"))
	writeJSON(w, mpauthx.HTTPStatus(err), res)
}

// validDemoOpenID keeps /dev/code's user IDs simple enough to paste into
// a shell.
func validDemoOpenID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// writeJSON sends v as JSON with the HTTP status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// logRequests prints one line per request: method, path, status and time.
// Never headers or bodies, which hold tokens and codes.
func logRequests(out io.Writer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		fmt.Fprintf(out, "%s %s -> %d (%v)\n", r.Method, r.URL.Path, sw.status, time.Since(start).Round(10*time.Microsecond))
	})
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// syncWriter serialises writes from the HTTP handlers' goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
