package mpauthx_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
)

// soakFor is how long TestSoak runs on each backend. 0 means a short run
// sized for CI: 2 s per backend, less when there are many, so that all
// backends together take about 8 s. Run a long one with
//
//	go test -run '^TestSoak$' -soak 10m .
//
// (with MPAUTHX_REDIS_ADDR set, to soak a real Redis).
var soakFor = flag.Duration("soak", 0, "run TestSoak for this long on each backend (0: a short run)")

const (
	soakUsers   = 48 // few enough that goroutines often meet on one user
	soakWorkers = 24
)

// soakDuration returns the duration of one backend's soak.
func soakDuration() time.Duration {
	if *soakFor > 0 {
		return *soakFor
	}
	n := len(backends())
	if os.Getenv(envPostgresDSN) != "" {
		n *= 2
	}
	return min(2*time.Second, 8*time.Second/time.Duration(n))
}

// soakUser is the expected state of one user. Operations that change it
// (a login that issues a token, a refresh, a revoke) hold mu; those that
// must leave it alone (checks, logins that get the live token back,
// revoking a dead token) share it, so they also run concurrently with
// each other on the same user.
type soakUser struct {
	mu         sync.RWMutex
	openID     string
	registered bool     // logged in once: has a user row
	live       string   // the token that must be valid; "" for none
	dead       []string // tokens revoked or refreshed away
}

// soak is one backend's run.
type soak struct {
	t     *testing.T
	e     *env
	users []*soakUser
	mw    http.Handler

	stop   atomic.Bool // a failure stops the run early
	failMu sync.Mutex
	fails  []string

	issuedMu sync.Mutex
	issued   map[string]bool // every token ever issued

	ops [soakOpKinds]atomic.Int64
}

// The kinds of operations, for the counts.
const (
	opCheck = iota
	opCheckMiddleware
	opLoginLive
	opLoginNew
	opRefresh
	opRefreshBurst
	opRefreshUnknown
	opRevoke
	opRevokeDead
	soakOpKinds
)

var soakOpNames = [soakOpKinds]string{"check", "check via Middleware", "login (live token)", "login (new token)",
	"refresh", "concurrent refreshes", "refresh (unregistered)", "revoke", "revoke a dead token"}

// TestSoak runs logins, checks, refreshes and revokes from many goroutines
// for a fixed time on each backend, checking each result against the
// expected state of its user, then checks the final state: every live
// token valid, every revoked or refreshed-away one invalid, a user row for
// every user who logged in and none for the others, exactly one Redis key
// per live token, each with a TTL, holding that token's session.
func TestSoak(t *testing.T) {
	d := soakDuration()
	forEachRedis(t, func(c *mpauthx.Config) { c.TokenTTL = d + time.Hour }, func(t *testing.T, e *env) {
		s := &soak{t: t, e: e, issued: map[string]bool{}}
		for i := range soakUsers {
			s.users = append(s.users, &soakUser{openID: e.user(fmt.Sprint("soak", i)).OpenID})
		}
		s.mw = e.c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := mpauthx.OpenIDFromContext(r.Context())
			w.Write([]byte(id))
		}))
		// The run lasts d, and longer if some kind of operation has not
		// been done yet (a slow machine does fewer in d); hangGuard only
		// ends a run that cannot get there.
		deadline, hangGuard := time.Now().Add(d), time.Now().Add(d+2*time.Minute)
		more := func() bool {
			if s.stop.Load() || time.Now().After(hangGuard) {
				return false
			}
			return time.Now().Before(deadline) || !s.everyKindDone()
		}
		var wg sync.WaitGroup
		for range soakWorkers {
			wg.Go(func() {
				for more() {
					s.step(s.users[rand.IntN(len(s.users))])
				}
			})
		}
		wg.Wait()
		var total int64
		var counts []string
		for k := range s.ops {
			n := s.ops[k].Load()
			total += n
			counts = append(counts, fmt.Sprintf("%s %d", soakOpNames[k], n))
		}
		t.Logf("%v, %d goroutines, %d users: %d operations (%s)", d, soakWorkers, soakUsers, total, strings.Join(counts, ", "))
		if len(s.fails) > 0 {
			t.Fatalf("%d failures, first ones:\n%s", len(s.fails), strings.Join(s.fails[:min(len(s.fails), 10)], "\n"))
		}
		for k := range s.ops {
			if s.ops[k].Load() == 0 && k != opRefreshUnknown { // every user may log in before a refresh finds one unregistered
				t.Errorf("no %s was done before the hang guard", soakOpNames[k])
			}
		}
		s.verify()
	})
}

// everyKindDone reports whether every kind of operation that must happen
// has been done at least once.
func (s *soak) everyKindDone() bool {
	for k := range s.ops {
		if s.ops[k].Load() == 0 && k != opRefreshUnknown {
			return false
		}
	}
	return true
}

// fail records a failure and stops the run.
func (s *soak) fail(format string, args ...any) {
	s.failMu.Lock()
	s.fails = append(s.fails, fmt.Sprintf(format, args...))
	s.failMu.Unlock()
	s.stop.Store(true)
}

// fresh records a newly issued token, failing if it was issued before.
func (s *soak) fresh(u *soakUser, tok string) {
	if s.e.c.ExtractOpenID(tok) != u.openID || s.e.c.ExtractSku(tok) != s.e.cfg.Sku {
		s.fail("%s: token %q is not the user's", u.openID, tok)
	}
	s.issuedMu.Lock()
	defer s.issuedMu.Unlock()
	if s.issued[tok] {
		s.fail("%s: token %q issued twice", u.openID, tok)
	}
	s.issued[tok] = true
}

// valid checks IsTokenValid(tok) == want.
func (s *soak) valid(u *soakUser, what, tok string, want bool) {
	ok, err := s.e.c.IsTokenValid(bg, tok)
	if err != nil || ok != want {
		s.fail("%s: IsTokenValid(%s) = %v, %v; want %v", u.openID, what, ok, err, want)
	}
}

// login logs u in with Authorize or AuthorizeCode.
func (s *soak) login(u *soakUser) (string, error) {
	var res mpauthx.Result
	var err error
	if rand.IntN(2) == 0 {
		res, err = s.e.c.AuthorizeCode(bg, s.e.wx.Code(u.openID))
	} else {
		data, iv := s.e.wx.UserInfo(u.openID)
		res, err = s.e.c.Authorize(bg, s.e.wx.Code(u.openID), data, iv)
	}
	return res.Response, err
}

// step runs one random operation on u.
func (s *soak) step(u *soakUser) {
	switch p := rand.IntN(100); {
	case p < 35:
		s.check(u)
	case p < 45:
		s.checkMiddleware(u)
	case p < 65:
		s.loginUser(u)
	case p < 80:
		s.refresh(u)
	case p < 90:
		s.revoke(u)
	default:
		s.revokeDead(u)
	}
}

// randomDead returns one of u's dead tokens, or "". u.mu is held.
func (u *soakUser) randomDead() string {
	if len(u.dead) == 0 {
		return ""
	}
	return u.dead[rand.IntN(len(u.dead))]
}

func (s *soak) check(u *soakUser) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	s.ops[opCheck].Add(1)
	if u.live != "" {
		s.valid(u, "live token", u.live, true)
	}
	if d := u.randomDead(); d != "" {
		s.valid(u, "dead token", d, false)
	}
}

func (s *soak) checkMiddleware(u *soakUser) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	s.ops[opCheckMiddleware].Add(1)
	serve := func(tok string) (int, string) {
		rec := serveAuth(s.mw, "Bearer "+tok)
		return rec.Code, rec.Body.String()
	}
	if u.live != "" {
		if code, body := serve(u.live); code != http.StatusOK || body != u.openID {
			s.fail("%s: Middleware with the live token: HTTP %d, %q", u.openID, code, body)
		}
	}
	if d := u.randomDead(); d != "" {
		if code, body := serve(d); code != http.StatusUnauthorized {
			s.fail("%s: Middleware with a dead token: HTTP %d, %q", u.openID, code, body)
		}
	}
}

// loginUser logs u in: with a live token, under the shared lock, the login
// must return it; without, under the exclusive lock, one to three
// concurrent logins must all return the same new token.
func (s *soak) loginUser(u *soakUser) {
	u.mu.RLock()
	if live := u.live; live != "" {
		s.ops[opLoginLive].Add(1)
		tok, err := s.login(u)
		if err != nil || tok != live {
			s.fail("%s: login with a live token = %q, %v; want the live token", u.openID, tok, err)
		}
		u.mu.RUnlock()
		return
	}
	u.mu.RUnlock()

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.live != "" { // another goroutine logged u in meanwhile
		return
	}
	s.ops[opLoginNew].Add(1)
	n := 1 + rand.IntN(3)
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { toks[i], errs[i] = s.login(u) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.fail("%s: login: %v", u.openID, err)
		return
	}
	for _, tok := range toks[1:] {
		if tok != toks[0] {
			s.fail("%s: %d concurrent logins got different tokens %q", u.openID, n, toks)
			return
		}
	}
	s.fresh(u, toks[0])
	u.live, u.registered = toks[0], true
}

// refresh refreshes u's token, sometimes from several goroutines at once:
// of their new tokens exactly one is live, the others and the old one are
// dead. An unregistered user gets 6010.
func (s *soak) refresh(u *soakUser) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.registered {
		s.ops[opRefreshUnknown].Add(1)
		if _, err := s.e.c.RefreshToken(bg, u.openID); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
			s.fail("%s: RefreshToken of an unregistered user: %v, want 6010", u.openID, err)
		}
		return
	}
	n := 1
	if rand.IntN(4) == 0 {
		n = 2 + rand.IntN(3)
		s.ops[opRefreshBurst].Add(1)
	} else {
		s.ops[opRefresh].Add(1)
	}
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.e.c.RefreshToken(bg, u.openID)
			toks[i], errs[i] = res.Response, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.fail("%s: RefreshToken: %v", u.openID, err)
		return
	}
	if u.live != "" {
		u.dead = append(u.dead, u.live)
		s.valid(u, "refreshed-away token", u.live, false)
	}
	u.live = ""
	for _, tok := range toks {
		s.fresh(u, tok)
		ok, err := s.e.c.IsTokenValid(bg, tok)
		switch {
		case err != nil:
			s.fail("%s: IsTokenValid: %v", u.openID, err)
		case ok && u.live != "":
			s.fail("%s: %d concurrent refreshes left two live tokens", u.openID, n)
		case ok:
			u.live = tok
		default:
			u.dead = append(u.dead, tok)
		}
	}
	if u.live == "" {
		s.fail("%s: %d concurrent refreshes left no live token", u.openID, n)
	}
}

// revoke revokes u's live token.
func (s *soak) revoke(u *soakUser) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.live == "" {
		return
	}
	s.ops[opRevoke].Add(1)
	if err := s.e.c.RevokeToken(bg, u.live); err != nil {
		s.fail("%s: RevokeToken: %v", u.openID, err)
		return
	}
	s.valid(u, "revoked token", u.live, false)
	u.dead = append(u.dead, u.live)
	u.live = ""
}

// revokeDead revokes one of u's dead tokens: a no-op that must not touch
// the live one.
func (s *soak) revokeDead(u *soakUser) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	d := u.randomDead()
	if d == "" {
		return
	}
	s.ops[opRevokeDead].Add(1)
	if err := s.e.c.RevokeToken(bg, d); err != nil {
		s.fail("%s: RevokeToken of a dead token: %v", u.openID, err)
	}
	if u.live != "" {
		s.valid(u, "live token after revoking a dead one", u.live, true)
	}
}

// verify checks the final state against the expected one.
func (s *soak) verify() {
	t, e := s.t, s.e
	type check struct {
		u    *soakUser
		tok  string
		want bool
	}
	checks := make(chan check)
	var wg sync.WaitGroup
	for range soakWorkers {
		wg.Go(func() {
			for c := range checks {
				what := "dead token"
				if c.want {
					what = "live token"
				}
				s.valid(c.u, what, c.tok, c.want)
			}
		})
	}
	var dead, live, registered int
	wantKeys := map[string]string{} // key -> session
	for _, u := range s.users {
		if u.live != "" {
			live++
			checks <- check{u, u.live, true}
			wantKeys[e.key(u.openID)] = u.live[strings.LastIndexByte(u.live, '|')+1:]
		}
		for _, d := range u.dead {
			dead++
			checks <- check{u, d, false}
		}
		var n int
		if err := e.queryRow(`SELECT count(*) FROM user WHERE openId = ?`, u.openID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		want := 0
		if u.registered {
			registered++
			want = 1
		}
		if n != want {
			t.Errorf("%s: %d user rows, want %d", u.openID, n, want)
		}
	}
	close(checks)
	wg.Wait()
	if len(s.fails) > 0 {
		t.Fatalf("final state: %d failures, first ones:\n%s", len(s.fails), strings.Join(s.fails[:min(len(s.fails), 10)], "\n"))
	}
	if n := e.userRows(t); n != registered {
		t.Errorf("%d user rows, want %d", n, registered)
	}
	keys := e.skuKeys(t)
	if len(keys) != len(wantKeys) {
		t.Errorf("%d keys for %d live tokens", len(keys), len(wantKeys))
	}
	ttl := e.cfg.TokenTTL
	for _, k := range keys {
		want, ok := wantKeys[k]
		if !ok {
			t.Errorf("key %q belongs to no live token", k)
			continue
		}
		if got, err := e.rdb.Get(bg, k).Result(); err != nil || got != want {
			t.Errorf("key %q holds %q, %v; want the live session %q", k, got, err, want)
		}
		if pttl, err := e.rdb.PTTL(bg, k).Result(); err != nil || pttl <= 0 || pttl > ttl {
			t.Errorf("key %q: PTTL %v, %v; want a TTL up to %v", k, pttl, err, ttl)
		}
	}
	t.Logf("final state: %d registered users, %d live tokens, %d dead tokens checked; %d keys, all with a TTL",
		registered, live, dead, len(keys))
}
