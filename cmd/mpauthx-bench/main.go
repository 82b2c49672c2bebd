// Command mpauthx-bench measures mpauthx on the workload of the Node.js
// original's benchmark: logins against a fake WeChat on loopback, then
// token checks, with Redis already holding many other live tokens.
//
// Usage:
//
//	go run ./cmd/mpauthx-bench -redis 127.0.0.1:6379 -users 2000 -prefill 200000 -concurrency 64 -seconds 5
//	go run ./cmd/mpauthx-bench -redis 127.0.0.1:6379 -local-cache 10000   (Config.LocalCache)
//	go run ./cmd/mpauthx-bench -cluster 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002   (Redis Cluster)
//
// It runs in five phases:
//
//  1. prefill: writes PREFILL other live tokens (with a TTL, in pipelines)
//     into Redis, in the key layout of real tokens, printing progress on
//     stderr;
//  2. logins: USERS users log in with Client.Authorize, CONCURRENCY at a
//     time, against an mpauthxtest fake WeChat on loopback (in this
//     process, or with -fake-process in a child process, as
//     bench/node-login runs it) and a SQLite file in a temporary
//     directory. CONCURRENCY other users log in first,
//     untimed, as on a server that has been up for a while: the
//     connections to WeChat and Redis are open, the Lua script is loaded;
//  3. checks: CONCURRENCY goroutines call Client.IsTokenValid on the users'
//     tokens for SECONDS. One check in 16 is of a token that must be
//     refused: revoked, forged (a live user with a made-up session) or
//     malformed;
//  4. rechecks: the same with the live tokens only, as a busy backend
//     checks the tokens of its users again and again: with -local-cache,
//     what the cache answers in process once it holds them (it was filled
//     in the checks phase);
//  5. cleanup: deletes every key it wrote, by name.
//
// It then prints one JSON line on stdout: for logins, checks and
// rechecks, the count, the rate per second, p50/p99/max latency in
// microseconds, the failures (calls that returned an error) and the wrong
// answers (a login whose token names another user; a check that said true
// for a bad token or false for a live one). On a real Redis, the checks
// and rechecks also report the commands Redis ran meanwhile (from INFO
// commandstats, all clients, INFO itself excepted) and that number per
// check.
//
// Without -redis it uses an embedded miniredis, which is not a real Redis:
// the JSON then says "real_redis": false and its figures say little about
// production. With -redis it uses that server (database -redis-db, password
// from -redis-password or $MPAUTHX_REDIS_PASSWORD), and with -cluster the
// Redis Cluster seeded by those addresses, through a *redis.ClusterClient
// (the commands Redis ran are then summed over its masters); it writes only
// keys of a Sku made up for the run (mpauthx:{...|bench-XXXXXXXXXX}:session and :sks), each with
// a TTL, and deletes them at the end, also when interrupted. It never flushes
// a database.
//
// With -fake-wechat it measures nothing: it serves the fake WeChat of the
// logins phase (the same app and users) for bench/node-login, the Node.js
// original's login, so that both sides log in against the same fake. It
// prints one JSON line (api_base, appid, secret, users_url: GET
// users_url?n=N registers N new users and answers, for each, the openid
// and one login's code, encryptedData and iv), then serves until its
// stdin ends.
//
// Exit status: 0 when the run completed without failures or wrong answers,
// 1 otherwise, 2 for a bad flag.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

const (
	benchAppID  = "wx-bench-app"
	envPassword = "MPAUTHX_REDIS_PASSWORD"
	// keyTTL bounds the life of every key the run writes, so that even a
	// killed run leaves nothing behind for long.
	keyTTL = 30 * time.Minute
	// pipelineDepth is the number of commands per pipeline when prefilling
	// and cleaning up.
	pipelineDepth = 1000
	// badEvery makes one check in badEvery a token that must be refused.
	badEvery = 16
)

func main() {
	// Failures are counted and reported in the JSON; go-redis's own log
	// lines would only repeat them.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpauthx-bench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// usageError is a bad command line (exit status 2).
type usageError struct{ error }

// options are the command-line flags.
type options struct {
	redisAddr     string
	cluster       string
	redisPassword string
	redisDB       int
	users         int
	prefill       int
	concurrency   int
	seconds       float64
	localCache    int
	cpuProfile    string
	fakeWeChat    bool
	fakeProcess   bool
}

// parseFlags parses args.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mpauthx-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.redisAddr, "redis", "", "Redis `host:port`; empty: an embedded miniredis (not a real Redis)")
	fs.StringVar(&o.cluster, "cluster", "", "Redis Cluster seed `addresses`, comma-separated, instead of -redis")
	fs.StringVar(&o.redisPassword, "redis-password", "", "Redis password (default $"+envPassword+")")
	fs.IntVar(&o.redisDB, "redis-db", 0, "Redis database `number`")
	fs.IntVar(&o.users, "users", 2000, "users who log in")
	fs.IntVar(&o.prefill, "prefill", 200000, "other live tokens written into Redis first")
	fs.IntVar(&o.concurrency, "concurrency", 64, "logins and checks in flight")
	fs.Float64Var(&o.seconds, "seconds", 5, "duration of the token checks")
	fs.IntVar(&o.localCache, "local-cache", 0, "Config.LocalCache: tokens checked in process, kept current by Redis (0: off)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the logins and checks to `file`")
	fs.BoolVar(&o.fakeWeChat, "fake-wechat", false, "only serve the fake WeChat and its users for another program (bench/node-login), until stdin ends")
	fs.BoolVar(&o.fakeProcess, "fake-process", false, "run the fake WeChat in a child process (this command with -fake-wechat), as bench/node-login does")
	if err := fs.Parse(args); err != nil { // also -h: flag.ErrHelp
		return o, usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return o, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case o.users < 1:
		return o, usageError{errors.New("-users must be at least 1")}
	case o.prefill < 0:
		return o, usageError{errors.New("-prefill must not be negative")}
	case o.concurrency < 1:
		return o, usageError{errors.New("-concurrency must be at least 1")}
	case !(o.seconds > 0) || math.IsInf(o.seconds, 0):
		return o, usageError{errors.New("-seconds must be positive")}
	case o.redisDB < 0:
		return o, usageError{errors.New("-redis-db must not be negative")}
	case o.localCache < 0:
		return o, usageError{errors.New("-local-cache must not be negative")}
	case o.cluster != "" && (o.redisAddr != "" || o.redisDB != 0):
		return o, usageError{errors.New("-cluster excludes -redis and -redis-db")}
	}
	if o.redisPassword == "" {
		o.redisPassword = os.Getenv(envPassword)
	}
	return o, nil
}

// Report is the JSON line the command prints.
type Report struct {
	Redis       string  `json:"redis"`
	RealRedis   bool    `json:"real_redis"`
	Sku         string  `json:"sku"`
	GoMaxProcs  int     `json:"gomaxprocs"`
	Users       int     `json:"users"`
	Prefill     int     `json:"prefill"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	// FakeProcess says whether the fake WeChat ran in a child process
	// (-fake-process) rather than in this one.
	FakeProcess bool `json:"fake_process"`
	// LocalCache is the Client's Config.LocalCache.
	LocalCache int   `json:"local_cache"`
	Logins     Phase `json:"logins"`
	Checks     Phase `json:"checks"`
	// Rechecks are checks of live tokens only.
	Rechecks Phase `json:"rechecks"`
	// BadChecks is how many of the checks were of tokens that must be
	// refused (revoked, forged or malformed).
	BadChecks int64 `json:"bad_checks"`
	// KeysLeft is the number of keys the run wrote that it could not
	// delete (0 after a clean run).
	KeysLeft int `json:"keys_left"`
}

// Phase sums up the calls of one phase.
type Phase struct {
	Count  int64   `json:"count"`
	PerSec float64 `json:"per_sec"`
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
	// RedisCommands is how many commands Redis ran during the phase,
	// from INFO commandstats (all clients; INFO excepted), and
	// CommandsPerCall that number per call: checks and rechecks, on a
	// Redis that reports them (not miniredis).
	RedisCommands   int64   `json:"redis_commands,omitempty"`
	CommandsPerCall float64 `json:"redis_commands_per_call,omitempty"`
	// CPUPerCall is the CPU time (user and system, in µs) this process
	// used during the phase, per call: the client's, and for logins the
	// fake WeChat's and SQLite's too; RedisCPUPerCall is Redis's, from
	// INFO cpu (on a Redis that reports it). Unlike the rates, they hardly
	// depend on what else the machine is running.
	CPUPerCall      float64 `json:"cpu_us_per_call,omitempty"`
	RedisCPUPerCall float64 `json:"redis_cpu_us_per_call,omitempty"`
	Failures        int64   `json:"failures"`
	Wrong           int64   `json:"wrong"`
}

// run runs the benchmark and prints its report on stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.fakeWeChat {
		return serveFake(ctx, os.Stdin, stdout)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "mpauthx-bench: "+format+"\n", a...) }

	rep := Report{
		Sku: "bench-" + rand.Text()[:10], GoMaxProcs: runtime.GOMAXPROCS(0),
		Users: o.users, Prefill: o.prefill, Concurrency: o.concurrency, Seconds: o.seconds,
		LocalCache: o.localCache, FakeProcess: o.fakeProcess,
	}
	var rdb redis.UniversalClient
	switch {
	case o.cluster != "":
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(o.cluster, ","), Password: o.redisPassword})
		rep.Redis = "cluster " + o.cluster
		rep.RealRedis = true
	case o.redisAddr == "":
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("starting miniredis: %w", err)
		}
		defer mr.Close()
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		rep.Redis = "miniredis (embedded, not a real Redis)"
	default:
		rdb = redis.NewClient(&redis.Options{Addr: o.redisAddr, Password: o.redisPassword, DB: o.redisDB})
		rep.Redis = o.redisAddr
		rep.RealRedis = true
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", rep.Redis, err)
	}

	dir, err := os.MkdirTemp("", "mpauthx-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := mpauthx.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		return err
	}
	defer db.Close()

	var wx *fakeWeChat
	if o.fakeProcess {
		wx, err = startFakeProcess(ctx)
		if err != nil {
			return err
		}
	} else {
		wx = inProcessFake()
	}
	defer wx.close()
	c, err := mpauthx.New(mpauthx.Config{
		AppID: wx.appID, AppSecret: wx.secret, Sku: rep.Sku, TokenTTL: keyTTL,
		Redis: rdb, DB: db, APIBase: wx.apiBase, LocalCache: o.localCache,
	})
	if err != nil {
		return err
	}
	defer c.Close()

	// Every key is deleted at the end, whatever happens, with a context
	// of its own so that an interrupt does not skip it.
	w := &written{sku: rep.Sku}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		left, cerr := w.cleanup(cctx, rdb)
		rep.KeysLeft = left
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %d keys left: %w", left, cerr))
			return
		}
		if err == nil {
			err = printReport(stdout, rep)
		}
	}()

	if err := prefill(ctx, rdb, w, o.prefill, logf); err != nil {
		return err
	}
	warm, err := makeUsers(wx, o.concurrency, w)
	if err != nil {
		return err
	}
	users, err := makeUsers(wx, o.users, w)
	if err != nil {
		return err
	}
	// The prefill's pipelines and the users' profiles are garbage now:
	// collect it before the timed phases rather than during them.
	runtime.GC()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if _, warmed := login(ctx, c, warm, o.concurrency); warmed.Failures+warmed.Wrong > 0 {
		return fmt.Errorf("warm-up: %d of %d logins failed", warmed.Failures+warmed.Wrong, len(warm))
	}
	logf("logging %d users in, %d at a time", o.users, o.concurrency)
	var tokens []string
	rep.Logins, _, err = counted(ctx, rdb, func() (p Phase, _ int64) {
		tokens, p = login(ctx, c, users, o.concurrency)
		return p, 0
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	plan, err := checkPlan(ctx, c, users, tokens)
	if err != nil {
		return err
	}
	d := time.Duration(o.seconds * float64(time.Second))
	logf("checking tokens with %d goroutines for %gs", o.concurrency, o.seconds)
	rep.Checks, rep.BadChecks, err = counted(ctx, rdb, func() (Phase, int64) { return check(ctx, c, plan, o.concurrency, d) })
	if err != nil {
		return err
	}
	logf("checking live tokens only with %d goroutines for %gs", o.concurrency, o.seconds)
	rep.Rechecks, _, err = counted(ctx, rdb, func() (Phase, int64) { return check(ctx, c, livePlan(plan), o.concurrency, d) })
	if err != nil {
		return err
	}
	failures, wrong := rep.Checks.Failures+rep.Rechecks.Failures, rep.Checks.Wrong+rep.Rechecks.Wrong
	if rep.Logins.Failures+rep.Logins.Wrong+failures+wrong > 0 {
		err = fmt.Errorf("%d login failures, %d wrong logins, %d check failures, %d wrong checks",
			rep.Logins.Failures, rep.Logins.Wrong, failures, wrong)
		if perr := printReport(stdout, rep); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// printReport writes rep as one JSON line.
func printReport(w io.Writer, rep Report) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// sessionKey is the Redis key of a user's token, in mpauthx's documented
// layout.
func sessionKey(userID, sku string) string {
	return "mpauthx:{" + userID + "|" + sku + "}:session"
}

// prefillKey is the key of the i-th prefilled token.
func prefillKey(i int, sku string) string {
	return sessionKey("obench-prefill-"+strconv.Itoa(i), sku)
}

// written records the keys the run wrote, to delete them at the end. The
// prefilled keys are recorded as a count and named again by prefillKey, so
// that hundreds of thousands of them do not sit on the heap (and in every
// garbage collection) while the checks are timed.
type written struct {
	sku      string
	prefills atomic.Int64 // keys prefillKey(0..prefills-1, sku), possibly written
	mu       sync.Mutex
	keys     []string
}

func (w *written) add(keys ...string) {
	w.mu.Lock()
	w.keys = append(w.keys, keys...)
	w.mu.Unlock()
}

// cleanup deletes the recorded keys in pipelines and returns how many it
// could not delete.
func (w *written) cleanup(ctx context.Context, rdb redis.UniversalClient) (int, error) {
	w.mu.Lock()
	keys := w.keys
	w.keys = nil
	w.mu.Unlock()
	n := int(w.prefills.Swap(0))
	total := n + len(keys)
	key := func(i int) string {
		if i < n {
			return prefillKey(i, w.sku)
		}
		return keys[i-n]
	}
	for i := 0; i < total; i += pipelineDepth {
		end := min(i+pipelineDepth, total)
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < end; j++ {
				p.Unlink(ctx, key(j))
			}
			return nil
		})
		if err != nil {
			return total - i, err
		}
	}
	return 0, nil
}

// prefill writes n live tokens of made-up users of sku, with pipelines on
// a few connections, and prints its progress.
func prefill(ctx context.Context, rdb redis.UniversalClient, w *written, n int, logf func(string, ...any)) error {
	sku := w.sku
	if n == 0 {
		return nil
	}
	logf("prefilling %d other live tokens", n)
	start := time.Now()
	var done atomic.Int64
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				logf("prefill: %d/%d keys", done.Load(), n)
			}
		}
	}()
	const writers = 4
	chunks := make(chan int)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range chunks {
				last := min(first+pipelineDepth, n)
				_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := first; i < last; i++ {
						p.Set(ctx, prefillKey(i, sku), rand.Text(), keyTTL)
					}
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("prefill: %w", err)
					return
				}
				done.Add(int64(last - first))
			}
		}()
	}
	// Cleanup deletes prefillKey(0..n-1): recorded before writing, so that
	// a half-written pipeline is cleaned up too.
	w.prefills.Store(int64(n))
	var err error
feed:
	for first := 0; first < n; first += pipelineDepth {
		select {
		case chunks <- first:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(chunks)
	wg.Wait()
	close(stopProgress)
	<-progressDone
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return err
	}
	logf("prefill: %d keys in %.2fs", n, time.Since(start).Seconds())
	return nil
}

// user is one user of the run, with the wx.login results of one login.
type user struct {
	openID         string
	code, data, iv string
	revoke         bool // its token is revoked before the checks
}

// makeUsers registers n users with the fake WeChat and prepares one login
// each (what the mini program would send), outside the timed phase.
func makeUsers(wx *fakeWeChat, n int, w *written) ([]user, error) {
	users, err := wx.newUsers(n)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, 2*n)
	for _, u := range users {
		// A login writes the user's token and sealed session key.
		keys = append(keys, sessionKey(u.openID, w.sku), "mpauthx:{"+u.openID+"|"+w.sku+"}:sks")
	}
	w.add(keys...)
	return users, nil
}

// newUsers registers n new users with the fake WeChat and prepares one
// login each: the users of every run, the Node.js harness's included
// (see serveFake).
func newUsers(wx *mpauthxtest.Server, n int) []user {
	users := make([]user, n)
	for i := range users {
		u := wx.AddUser(mpauthxtest.User{
			OpenID: "o" + rand.Text()[:22] + "-" + strconv.Itoa(i), NickName: "bench " + strconv.Itoa(i),
			City: "Guangzhou", Province: "Guangdong", Country: "CN", Language: "zh_CN", Gender: 1,
		})
		data, iv := wx.UserInfo(u.OpenID)
		users[i] = user{openID: u.OpenID, code: wx.Code(u.OpenID), data: data, iv: iv, revoke: i%badEvery == 1}
	}
	return users
}

// login logs every user in with concurrency calls in flight and returns
// the tokens (by user) and the phase's figures.
func login(ctx context.Context, c *mpauthx.Client, users []user, concurrency int) ([]string, Phase) {
	tokens := make([]string, len(users))
	var next atomic.Int64
	var failures, wrong atomic.Int64
	hists := make([]histogram, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[g]
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					return
				}
				u := &users[i]
				t0 := time.Now()
				res, err := c.Authorize(ctx, u.code, u.data, u.iv)
				h.record(time.Since(t0))
				switch {
				case err != nil:
					failures.Add(1)
				case c.ExtractOpenID(res.Response) != u.openID || c.ExtractSku(res.Response) == "":
					wrong.Add(1)
				default:
					tokens[i] = res.Response
				}
			}
		}()
	}
	wg.Wait()
	return tokens, summarize(hists, time.Since(start), failures.Load(), wrong.Load())
}

// probe is one token to check and the answer IsTokenValid must give.
type probe struct {
	token string
	want  bool
}

// checkPlan revokes the tokens of the users marked so, and returns the
// probes: each live token, and one bad token (revoked, forged or
// malformed, in turn) per badEvery-1 live ones.
func checkPlan(ctx context.Context, c *mpauthx.Client, users []user, tokens []string) ([]probe, error) {
	var live, bad []probe
	for i, u := range users {
		tok := tokens[i]
		if tok == "" { // a failed login, already counted
			continue
		}
		if u.revoke {
			if err := c.RevokeToken(ctx, tok); err != nil {
				return nil, fmt.Errorf("revoking a token: %w", err)
			}
			bad = append(bad, probe{token: tok})
			continue
		}
		live = append(live, probe{token: tok, want: true})
		switch len(live) % (2 * badEvery) {
		case 0: // forged: a live user, a session of the right shape
			bad = append(bad, probe{token: u.openID + "|" + c.ExtractSku(tok) + "|" + rand.Text()})
		case badEvery: // malformed: refused without a round trip
			bad = append(bad, probe{token: tok + "|x"})
		}
	}
	if len(live) == 0 {
		return nil, errors.New("no login succeeded: nothing to check")
	}
	if len(bad) == 0 {
		bad = append(bad, probe{token: "not-a-token"})
	}
	plan := make([]probe, 0, len(live)+len(live)/(badEvery-1)+1)
	for i, p := range live {
		plan = append(plan, p)
		if i%(badEvery-1) == badEvery-2 {
			plan = append(plan, bad[(i/(badEvery-1))%len(bad)])
		}
	}
	return plan, nil
}

// livePlan returns the probes of plan whose token is live.
func livePlan(plan []probe) []probe {
	var live []probe
	for _, p := range plan {
		if p.want {
			live = append(live, p)
		}
	}
	return live
}

// counted runs phase and adds to its figures the commands Redis ran
// meanwhile, when Redis reports them (miniredis does not). It fails when
// ctx ended.
func counted(ctx context.Context, rdb redis.UniversalClient, phase func() (Phase, int64)) (Phase, int64, error) {
	before, counting := commandCalls(ctx, rdb)
	redisCPU0, redisCPUOK := redisCPU(ctx, rdb)
	cpu0, cpuOK := processCPU()
	p, n := phase()
	cpu1, cpuOK1 := processCPU()
	if err := ctx.Err(); err != nil {
		return p, n, err
	}
	if p.Count == 0 {
		return p, n, nil
	}
	perCall := func(d time.Duration) float64 { return round(float64(d) / 1e3 / float64(p.Count)) }
	if cpuOK && cpuOK1 {
		p.CPUPerCall = perCall(cpu1 - cpu0)
	}
	if after, ok := commandCalls(ctx, rdb); counting && ok {
		p.RedisCommands = after - before
		p.CommandsPerCall = math.Round(float64(p.RedisCommands)/float64(p.Count)*1e5) / 1e5
	}
	if redisCPU1, ok := redisCPU(ctx, rdb); redisCPUOK && ok {
		p.RedisCPUPerCall = perCall(redisCPU1 - redisCPU0)
	}
	return p, n, nil
}

// redisCPU returns the CPU time Redis has used (used_cpu_sys and
// used_cpu_user of INFO cpu), and false when Redis does not say.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (time.Duration, bool) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var total float64
	n := 0
	for line := range strings.Lines(info) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_sys" && name != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		total += f
		n++
	}
	return time.Duration(total * float64(time.Second)), n == 2
}

// commandCalls returns how many commands Redis has run, INFO excepted,
// from the calls= of INFO commandstats (summed over the masters of a
// Cluster), and false when Redis does not say.
func commandCalls(ctx context.Context, rdb redis.UniversalClient) (int64, bool) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nodeCommandCalls(ctx, rdb)
	}
	var (
		mu    sync.Mutex
		total int64
		all   = true
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, ok := nodeCommandCalls(ctx, node)
		mu.Lock()
		total, all = total+n, all && ok
		mu.Unlock()
		return nil
	})
	return total, err == nil && all
}

// nodeCommandCalls is commandCalls for one server.
func nodeCommandCalls(ctx context.Context, rdb redis.UniversalClient) (int64, bool) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, false
	}
	var n int64
	found := false
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == "info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return 0, false
		}
		n += v
		found = true
	}
	return n, found
}

// check runs concurrency goroutines calling IsTokenValid on the plan's
// probes for d and returns the figures and the number of bad probes
// checked.
func check(ctx context.Context, c *mpauthx.Client, plan []probe, concurrency int, d time.Duration) (Phase, int64) {
	var failures, wrong, bad atomic.Int64
	hists := make([]histogram, concurrency)
	var wg sync.WaitGroup
	var stop atomic.Bool
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for g := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[g]
			var nf, nw, nb int64
			for i := g * len(plan) / concurrency; !stop.Load() && ctx.Err() == nil; i++ {
				p := &plan[i%len(plan)]
				t0 := time.Now()
				ok, err := c.IsTokenValid(ctx, p.token)
				h.record(time.Since(t0))
				if !p.want {
					nb++
				}
				switch {
				case err != nil:
					nf++
				case ok != p.want:
					nw++
				}
			}
			failures.Add(nf)
			wrong.Add(nw)
			bad.Add(nb)
		}()
	}
	wg.Wait()
	return summarize(hists, time.Since(start), failures.Load(), wrong.Load()), bad.Load()
}

// summarize merges the goroutines' histograms into a Phase.
func summarize(hists []histogram, elapsed time.Duration, failures, wrong int64) Phase {
	var all histogram
	for i := range hists {
		all.merge(&hists[i])
	}
	p := Phase{
		Count: all.n, Failures: failures, Wrong: wrong,
		P50us: all.quantile(0.50), P99us: all.quantile(0.99), MaxUs: round(float64(all.max) / 1e3),
	}
	if elapsed > 0 {
		p.PerSec = math.Round(float64(all.n) / elapsed.Seconds())
	}
	return p
}

// round keeps one decimal.
func round(f float64) float64 { return math.Round(f*10) / 10 }

// histogram counts latencies in log-linear buckets: exact below 64 ns,
// then 32 linear sub-buckets per power of two, so a quantile is within
// about 3% of the true value. The zero value is ready to use; recording
// does not allocate.
type histogram struct {
	counts [64 * subBuckets]int64
	n      int64
	max    time.Duration
}

const (
	subBits    = 5
	subBuckets = 1 << subBits
)

// bucket returns the index of d's bucket.
func bucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits // v>>shift is in [subBuckets, 2*subBuckets)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// lower returns the smallest duration of bucket i, in nanoseconds.
func lower(i int) float64 {
	if i < 2*subBuckets {
		return float64(i)
	}
	shift := i/subBuckets - 1
	return float64(uint64(i%subBuckets+subBuckets) << shift)
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucket(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile in microseconds (the middle of its
// bucket, capped by the maximum), or 0 for an empty histogram.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.n))), 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			mid := (lower(i) + lower(i+1)) / 2
			return round(min(mid, float64(h.max)) / 1e3)
		}
	}
	return round(float64(h.max) / 1e3)
}
