// Command redisdown measures how long mpauthx's calls take to report a
// Redis that is down (a loopback port where nothing listens), with the
// Redis client New dials, with a client of go-redis's defaults, and with
// one of MaxRetries 1 and DialerRetries 1 (docs/operations.md, "Failure
// behaviour"). It needs nothing running:
//
//	go run ./bench/redisdown [-calls 12]
//
// For each client and call it prints the status code, the first call's
// time, and the median and maximum of the calls after it.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// quietLogger drops go-redis's log lines: every failed dial is one.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// deadAddr returns a loopback address nothing listens on.
func deadAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func main() {
	calls := flag.Int("calls", 12, "calls of each kind per client")
	flag.Parse()
	if *calls < 2 {
		log.Fatal("-calls must be at least 2")
	}
	redis.SetLogger(quietLogger{})
	if err := run(*calls); err != nil {
		log.Fatal(err)
	}
}

func run(n int) error {
	addr, err := deadAddr()
	if err != nil {
		return err
	}
	wx := mpauthxtest.NewServer("wx-redisdown", "redisdown-secret")
	defer wx.Close()
	wx.AddUser(mpauthxtest.User{OpenID: "o-1"})
	dir, err := os.MkdirTemp("", "redisdown")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := mpauthx.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO user(openId) VALUES('o-1')`); err != nil {
		return err
	}

	clients := []struct {
		name string
		rdb  func() redis.UniversalClient // nil: New dials Config.RedisAddr
	}{
		{"New dials (RedisAddr)", func() redis.UniversalClient { return nil }},
		{"go-redis defaults", func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr}) }},
		{"MaxRetries 1, DialerRetries 1", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialerRetries: 1, ContextTimeoutEnabled: true})
		}},
	}
	const token = "o-1|redisdown|ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	ops := []struct {
		name string
		call func(ctx context.Context, c *mpauthx.Client) error
	}{
		{"IsTokenValid(Background)", func(_ context.Context, c *mpauthx.Client) error {
			_, err := c.IsTokenValid(context.Background(), token)
			return err
		}},
		{"IsTokenValid", func(ctx context.Context, c *mpauthx.Client) error {
			_, err := c.IsTokenValid(ctx, token)
			return err
		}},
		{"AuthorizeCode", func(ctx context.Context, c *mpauthx.Client) error {
			_, err := c.AuthorizeCode(ctx, wx.Code("o-1"))
			return err
		}},
		{"RefreshToken", func(ctx context.Context, c *mpauthx.Client) error {
			_, err := c.RefreshToken(ctx, "o-1")
			return err
		}},
	}
	for _, cl := range clients {
		for _, op := range ops {
			if err := measure(db, wx, addr, cl.name, cl.rdb(), op.name, op.call, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// measure times n calls of one kind on a fresh Client and prints them.
func measure(db *sql.DB, wx *mpauthxtest.Server, addr, client string, rdb redis.UniversalClient,
	name string, call func(context.Context, *mpauthx.Client) error, n int) error {
	cfg := mpauthx.Config{AppID: wx.AppID, AppSecret: wx.AppSecret, APIBase: wx.URL,
		Sku: "redisdown", DB: db, RedisAddr: addr}
	if rdb != nil {
		cfg.Redis = rdb
		defer rdb.Close()
	}
	c, err := mpauthx.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	ds := make([]time.Duration, n)
	var code mpauthx.StatusCode
	for i := range ds {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := call(ctx, c)
		ds[i] = time.Since(start)
		cancel()
		if err == nil {
			return fmt.Errorf("%s, %s: succeeded against %s, where nothing should listen", client, name, addr)
		}
		code = mpauthx.Code(err)
	}
	rest := slices.Clone(ds[1:])
	slices.Sort(rest)
	fmt.Printf("%-30s %-25s %d  first %8v  then median %8v, max %8v\n", client, name, code,
		ds[0].Round(time.Millisecond), rest[len(rest)/2].Round(100*time.Microsecond), rest[len(rest)-1].Round(time.Millisecond))
	return nil
}
