// Package jwtbench compares mpauthx's token checks with verifying a JWT
// with github.com/golang-jwt/jwt/v5, in one run on one machine. It is a
// module of its own, so that the JWT library stays out of mpauthx's
// dependencies:
//
//	cd bench/jwt && MPAUTHX_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench . -benchmem
//
// docs/performance.md quotes its figures.
package jwtbench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// users is the number of users whose tokens the benchmarks cycle through.
const users = 2000

// inFlight is the number of goroutines of the parallel benchmarks, as in
// the Node original's benchmark.
const inFlight = 64

// BenchmarkCheck verifies a user's token, with 1 goroutine and with 64,
// five ways: mpauthx's IsTokenValid answered in process by
// Config.LocalCache ("cached"), and by Redis ("uncached"); and a JWT
// signed with HS256 (parsed into jwt.MapClaims, as most examples do, and
// into jwt.RegisteredClaims) and with EdDSA (Ed25519). Each JWT is
// checked as a server must: signature, algorithm pinned, expiry required.
// "redis-cmds/op" is what Redis ran per check meanwhile (INFO
// commandstats).
func BenchmarkCheck(b *testing.B) {
	addr := os.Getenv("MPAUTHX_REDIS_ADDR")
	if addr == "" {
		b.Skip("needs a real Redis (the local cache needs CLIENT TRACKING): set MPAUTHX_REDIS_ADDR")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { rdb.Close() })

	wx := mpauthxtest.NewServer("wx-jwt-bench", "jwt-bench-secret-"+rand.Text())
	b.Cleanup(wx.Close)
	db, err := mpauthx.OpenSQLite(filepath.Join(b.TempDir(), "users.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cfg := mpauthx.Config{
		AppID: wx.AppID, AppSecret: wx.AppSecret, Sku: "bench-jwt-" + rand.Text()[:8],
		TokenTTL: 10 * time.Minute, Redis: rdb, DB: db, APIBase: wx.URL,
	}
	uncached := client(b, cfg)
	cfg.LocalCache = 2 * users
	cached := client(b, cfg)

	ids := make([]string, users)
	tokens := make([]string, users)
	for i := range ids {
		u := wx.AddUser(mpauthxtest.User{OpenID: "ojwt" + strconv.Itoa(i) + "-" + rand.Text()[:8], NickName: "bench"})
		res, err := uncached.AuthorizeCode(context.Background(), wx.Code(u.OpenID))
		if err != nil {
			b.Fatal(err)
		}
		ids[i], tokens[i] = u.OpenID, res.Response
	}
	b.Cleanup(func() {
		ctx := context.Background()
		for _, id := range ids {
			rdb.Unlink(ctx, "mpauthx:{"+id+"|"+cfg.Sku+"}:session", "mpauthx:{"+id+"|"+cfg.Sku+"}:sk")
		}
	})
	warm(b, cached, tokens)

	hsKey := []byte(rand.Text() + rand.Text()) // 260 random bits
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	hsJWTs, edJWTs := make([]string, users), make([]string, users)
	for i, id := range ids {
		claims := jwt.RegisteredClaims{Subject: id, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(time.Now())}
		if hsJWTs[i], err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(hsKey); err != nil {
			b.Fatal(err)
		}
		if edJWTs[i], err = jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(edPriv); err != nil {
			b.Fatal(err)
		}
	}
	hsParser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	edParser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithExpirationRequired())
	hsKeyFunc := func(*jwt.Token) (any, error) { return hsKey, nil }
	edKeyFunc := func(*jwt.Token) (any, error) { return edPub, nil }

	// Each check returns the user ID it verified, which must be the
	// token's.
	checks := []struct {
		name  string
		check func(i int) (string, error)
	}{
		{"mpauthx-cached", func(i int) (string, error) { return isValid(cached, tokens[i]) }},
		{"mpauthx-uncached", func(i int) (string, error) { return isValid(uncached, tokens[i]) }},
		{"jwt-HS256-MapClaims", func(i int) (string, error) {
			t, err := hsParser.ParseWithClaims(hsJWTs[i], jwt.MapClaims{}, hsKeyFunc)
			if err != nil {
				return "", err
			}
			return t.Claims.GetSubject()
		}},
		{"jwt-HS256-RegisteredClaims", func(i int) (string, error) {
			var c jwt.RegisteredClaims
			if _, err := hsParser.ParseWithClaims(hsJWTs[i], &c, hsKeyFunc); err != nil {
				return "", err
			}
			return c.Subject, nil
		}},
		{"jwt-EdDSA-RegisteredClaims", func(i int) (string, error) {
			var c jwt.RegisteredClaims
			if _, err := edParser.ParseWithClaims(edJWTs[i], &c, edKeyFunc); err != nil {
				return "", err
			}
			return c.Subject, nil
		}},
	}
	for _, c := range checks {
		verify := func(i int) error {
			i %= users
			id, err := c.check(i)
			if err == nil && id != ids[i] {
				err = errors.New("the check verified another user")
			}
			return err
		}
		b.Run(c.name+"/1-goroutine", func(b *testing.B) {
			cmds0 := commands(b, rdb)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := verify(i); err != nil {
					b.Fatal(err)
				}
			}
			report(b, rdb, cmds0)
		})
		b.Run(c.name+"/64-goroutines", func(b *testing.B) {
			cmds0 := commands(b, rdb)
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((inFlight + procs - 1) / procs)
			b.ReportAllocs()
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := verify(int(next.Add(1) - 1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			report(b, rdb, cmds0)
		})
	}
}

// client returns a Client of cfg, closed when b ends.
func client(b *testing.B, cfg mpauthx.Config) *mpauthx.Client {
	c, err := mpauthx.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// isValid checks token on c and returns its user ID when it is live.
func isValid(c *mpauthx.Client, token string) (string, error) {
	ok, err := c.IsTokenValid(context.Background(), token)
	if err == nil && !ok {
		err = errors.New("a live token is not valid")
	}
	return c.ExtractOpenID(token), err
}

// warm checks every token on c until a round of checks costs Redis no
// command: the local cache holds them all.
func warm(b *testing.B, c *mpauthx.Client, tokens []string) {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("MPAUTHX_REDIS_ADDR")})
	defer rdb.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		before := commands(b, rdb)
		for _, t := range tokens {
			if _, err := isValid(c, t); err != nil {
				b.Fatal(err)
			}
		}
		if commands(b, rdb)-before <= 1 { // the INFO of commands itself
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the local cache does not fill")
		}
	}
}

// commands returns how many commands Redis has run, from INFO
// commandstats.
func commands(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for line := range strings.Lines(info) {
		_, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		n += v
	}
	return n
}

// report adds the checks per second and the Redis commands per check to
// b's results.
func report(b *testing.B, rdb *redis.Client, cmds0 int64) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "checks/s")
	}
	b.ReportMetric(float64(commands(b, rdb)-cmds0-1)/float64(b.N), "redis-cmds/op")
}
