package mpauthx_test

import (
	"errors"
	"maps"
	"net/http"
	"sync"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// statsDelta is what changed between two Stats.
func statsDelta(a, b mpauthx.Stats) mpauthx.Stats {
	d := mpauthx.Stats{
		Logins:              map[mpauthx.StatusCode]uint64{},
		Checks:              b.Checks - a.Checks,
		CacheHits:           b.CacheHits - a.CacheHits,
		CheckErrors:         b.CheckErrors - a.CheckErrors,
		PlatformCalls:       b.PlatformCalls - a.PlatformCalls,
		PlatformErrors:      b.PlatformErrors - a.PlatformErrors,
		AccessTokenRenewals: b.AccessTokenRenewals - a.AccessTokenRenewals,
		ForcedRefreshes:     b.ForcedRefreshes - a.ForcedRefreshes,
	}
	for code, n := range b.Logins {
		if n != a.Logins[code] {
			d.Logins[code] = n - a.Logins[code]
		}
	}
	return d
}

// TestStats: each kind of call moves exactly its counters, whatever path
// its requests to WeChat take.
func TestStats(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.wx.AddUser(mpauthxtest.User{OpenID: "o-stats", Phone: "13800138000"})
	var token string
	otherSku := "o-stats|other-sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	logins := func(m map[mpauthx.StatusCode]uint64) map[mpauthx.StatusCode]uint64 { return m }
	tests := []struct {
		name string
		do   func(t *testing.T)
		want mpauthx.Stats
	}{
		{"nothing yet", func(*testing.T) {}, mpauthx.Stats{}},
		{"Authorize", func(t *testing.T) {
			data, iv := e.wx.UserInfo(u.OpenID)
			res, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
			if err != nil {
				t.Fatal(err)
			}
			token = res.Response
		}, mpauthx.Stats{Logins: logins(map[mpauthx.StatusCode]uint64{mpauthx.StatusSuccess: 1}), PlatformCalls: 1}},
		{"AuthorizeCode with a missing, an unknown and a good code", func(t *testing.T) {
			e.c.AuthorizeCode(bg, "")
			e.c.AuthorizeCode(bg, "no-such-code")
			if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
				t.Fatal(err)
			}
		}, mpauthx.Stats{Logins: logins(map[mpauthx.StatusCode]uint64{mpauthx.StatusSuccess: 1, mpauthx.StatusRequiredParamsMissing: 1, mpauthx.StatusSessionKeyRequestError: 1}),
			PlatformCalls: 2, PlatformErrors: 1}},
		{"AuthorizePhone: code2session, stable_token, getuserphonenumber", func(t *testing.T) {
			if _, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)); err != nil {
				t.Fatal(err)
			}
		}, mpauthx.Stats{Logins: logins(map[mpauthx.StatusCode]uint64{mpauthx.StatusSuccess: 1}), PlatformCalls: 3, AccessTokenRenewals: 1}},
		{"a rejected access token that stable_token still hands out: forced refresh", func(t *testing.T) {
			e.wx.FailNextAt(mpauthxtest.PhoneNumberPath, 1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeInvalidAccessToken})
			if _, err := e.c.PhoneNumber(bg, e.wx.PhoneCode(u.OpenID)); err != nil {
				t.Fatal(err)
			}
			// The rejected call, stable_token in normal mode (which hands
			// the same token back), the forced one, the call again.
		}, mpauthx.Stats{PlatformCalls: 4, PlatformErrors: 1, AccessTokenRenewals: 2, ForcedRefreshes: 1}},
		{"WeChat answers HTTP 500, then is busy once", func(t *testing.T) {
			e.wx.FailNext(1, mpauthxtest.Fault{Status: 500})
			e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			e.wx.FailNext(1, mpauthxtest.Fault{ErrCode: -1})
			if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
				t.Fatal(err)
			}
		}, mpauthx.Stats{Logins: logins(map[mpauthx.StatusCode]uint64{mpauthx.StatusSuccess: 1, mpauthx.StatusSessionKeyRequestError: 1}),
			PlatformCalls: 3, PlatformErrors: 2}},
		{"checks: live, malformed, another Sku's, revoked", func(t *testing.T) {
			for _, tok := range []string{token, "junk", otherSku} {
				e.c.IsTokenValid(bg, tok)
			}
			e.c.RevokeToken(bg, token)
			e.c.IsTokenValid(bg, token)
		}, mpauthx.Stats{Checks: 4}},
		{"a check Redis cannot answer", func(t *testing.T) {
			e.mr.Close()
			defer e.mr.Restart()
			if _, err := e.c.IsTokenValid(bg, token); err == nil {
				t.Fatal("no error with Redis down")
			}
		}, mpauthx.Stats{CheckErrors: 1}},
		{"calls after Close", func(t *testing.T) {
			c := e.client(t, func(*mpauthx.Config) {})
			c.Close()
			c.IsTokenValid(bg, token)
			c.AuthorizeCode(bg, "x")
			if st := c.Stats(); st.Checks != 0 || st.Logins[mpauthx.StatusUnknownError] != 1 {
				t.Errorf("closed Client's Stats %+v", st)
			}
		}, mpauthx.Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.c.Stats()
			tt.do(t)
			got := statsDelta(before, e.c.Stats())
			if tt.want.Logins == nil {
				tt.want.Logins = map[mpauthx.StatusCode]uint64{}
			}
			if !maps.Equal(got.Logins, tt.want.Logins) || got.Checks != tt.want.Checks || got.CacheHits != tt.want.CacheHits ||
				got.CheckErrors != tt.want.CheckErrors || got.PlatformCalls != tt.want.PlatformCalls || got.PlatformErrors != tt.want.PlatformErrors ||
				got.AccessTokenRenewals != tt.want.AccessTokenRenewals || got.ForcedRefreshes != tt.want.ForcedRefreshes {
				t.Errorf("Stats moved by\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

// TestStatsOwnTransport: requests through the caller's own HTTP client
// are counted too, a transport error as a failed call, and the caller's
// transport still sees every request.
func TestStatsOwnTransport(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.user("own")
	var seen int
	var mu sync.Mutex
	fail := false
	c := e.client(t, func(cfg *mpauthx.Config) {
		cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			seen++
			f := fail
			mu.Unlock()
			if f {
				return nil, errors.New("no route to WeChat")
			}
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	if _, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	_, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
	wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
	st := c.Stats()
	if seen != 2 || st.PlatformCalls != 2 || st.PlatformErrors != 1 {
		t.Errorf("transport saw %d requests; Stats %+v", seen, st)
	}
}

// TestStatsConcurrent: checks from many goroutines at once are all
// counted, and a Stats taken meanwhile never shows more hits or errors
// than checks, nor a counter going back.
func TestStatsConcurrent(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	token := e.login(t, e.user("many"))
	const goroutines, each = 16, 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readerErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last mpauthx.Stats
		for {
			st := e.c.Stats()
			if st.Checks < last.Checks || st.CheckErrors < last.CheckErrors || st.CacheHits > st.Checks {
				readerErr = errors.New("Stats went back or out of order")
			}
			last = st
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				tok := token
				if (g+i)%3 == 0 {
					tok = "malformed"
				}
				if _, err := e.c.IsTokenValid(bg, tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-done
	if readerErr != nil {
		t.Error(readerErr)
	}
	if st := e.c.Stats(); st.Checks != goroutines*each || st.CheckErrors != 0 {
		t.Errorf("Stats %+v, want %d checks", st, goroutines*each)
	}
}

// TestStatsCacheHits: with LocalCache on a real Redis, the checks the
// cache answers are counted as hits, and are checks too.
func TestStatsCacheHits(t *testing.T) {
	forEachRedis(t, withCache, func(t *testing.T, e *env) {
		if !caches(e) {
			return // no cache: TestStats covers the counters
		}
		token := e.login(t, e.user("hits"))
		held(t, e, e.c, token)
		before := e.c.Stats()
		for range 100 {
			if !checkOf(t, e.c)(token) {
				t.Fatal("a live token is not valid")
			}
		}
		d := statsDelta(before, e.c.Stats())
		if d.Checks != 100 || d.CacheHits < 90 {
			t.Errorf("100 checks of a cached token moved Stats by %+v", d)
		}
	})
}
