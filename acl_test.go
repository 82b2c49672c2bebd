//go:build unix

package mpauthx_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// documentedACL returns the arguments of the ACL SETUSER line of
// docs/operations.md, with the password given.
func documentedACL(t *testing.T, password string) []any {
	t.Helper()
	f, err := os.Open("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "ACL SETUSER ") {
			continue
		}
		var args []any
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, ">") {
				w = ">" + password
			}
			args = append(args, w)
		}
		return args
	}
	t.Fatal("docs/operations.md has no ACL SETUSER line")
	return nil
}

// aclWorld starts a Redis of the test's own with a user "app" made by
// the ACL rules args (ACL SETUSER ...), and returns an env whose Client
// logs in as that user.
func aclWorld(t *testing.T, args []any, tweak func(*mpauthx.Config)) *env {
	t.Helper()
	p := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: p.Addr()})
	t.Cleanup(func() { admin.Close() })
	if err := admin.Do(bg, args...).Err(); err != nil {
		t.Fatal(err)
	}
	e := newProcWorld(t, p.Addr())
	if tweak != nil {
		tweak(&e.cfg)
	}
	openKind(t, e, redisKind{name: "app user", client: func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "app-password"})
	}})
	return e
}

// TestDocumentedACL checks that the Redis ACL of docs/operations.md
// allows every call that uses Redis (LocalCache aside, which lists its
// own in docs/localcache.md).
func TestDocumentedACL(t *testing.T) {
	args := documentedACL(t, "app-password")
	if args[2] != "app" {
		t.Fatalf("the documented ACL is for user %v, want app", args[2])
	}
	e := aclWorld(t, args, nil)
	u := e.user("ada")
	tok := e.login(t, u)
	if !e.valid(t, tok) {
		t.Fatal("the token is not valid")
	}
	res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
	if err != nil || res.Response != tok {
		t.Fatalf("AuthorizeCode = %q, %v", res.Response, err)
	}
	if _, err := e.c.AccessToken(bg); err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	if _, err := e.c.CheckSessionKey(bg, u.OpenID); err != nil {
		t.Fatalf("CheckSessionKey: %v", err)
	}
	res, err = e.c.RefreshToken(bg, u.OpenID)
	if err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	if err := e.c.RevokeToken(bg, res.Response); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	tok = e.login(t, u)
	if err := e.c.DeleteUser(bg, u.OpenID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if e.valid(t, tok) {
		t.Error("the token validates after DeleteUser")
	}
}

// TestSkuRegistryDeniedByACL checks that a Redis user that may not add
// to the Sku registry (an ACL written before DeleteUser) still logs
// users in, and that the Logger says once what that costs.
func TestSkuRegistryDeniedByACL(t *testing.T) {
	logger, logs := captureLogs(false)
	e := aclWorld(t, []any{"acl", "setuser", "app", "on", ">app-password", "~*", "+@all", "-sadd"},
		func(cfg *mpauthx.Config) { cfg.Logger = logger })
	for _, name := range []string{"bo", "cy"} {
		if tok := e.login(t, e.user(name)); !e.valid(t, tok) {
			t.Fatal("the token is not valid")
		}
	}
	if n := strings.Count(logs.String(), "denies SADD"); n != 1 {
		t.Errorf("%d log lines about the denied SADD, want 1:\n%s", n, logs)
	}
}
