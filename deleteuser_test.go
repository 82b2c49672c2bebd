package mpauthx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// skuRegistryKey is the Redis set of the Skus that DeleteUser reaches.
const skuRegistryKey = "mpauthx:skus"

// loginOn logs u in on c with Authorize and fails the test on error.
func (e *env) loginOn(t *testing.T, c *mpauthx.Client, u mpauthxtest.User) string {
	t.Helper()
	data, iv := e.wx.UserInfo(u.OpenID)
	res, err := c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	return res.Response
}

// userRedisKeys returns the Redis keys of userID and sku that exist.
func userRedisKeys(t *testing.T, rdb redis.UniversalClient, userID, sku string) []string {
	t.Helper()
	var left []string
	for _, suffix := range []string{"session", "sk", "sks"} {
		k := "mpauthx:{" + userID + "|" + sku + "}:" + suffix
		n, err := rdb.Exists(bg, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			left = append(left, k)
		}
	}
	return left
}

// TestDeleteUser checks that DeleteUser, called on a Client of one Sku,
// ends the user's tokens and session keys of every Sku sharing the
// Redis, on every instance: once it returns, no token of theirs
// validates, also on an instance whose LocalCache held it; other users
// keep theirs; a second call is no error.
func TestDeleteUser(t *testing.T) {
	forEachRedis(t, withCache, func(t *testing.T, e *env) {
		a := e.c                     // Sku A, with a LocalCache
		a2 := e.client(t, withCache) // another instance of Sku A
		skuB := e.cfg.Sku + "-b"
		b := e.client(t, func(cfg *mpauthx.Config) { cfg.Sku = skuB })

		u, v := e.user("ursula"), e.user("victor")
		uA, uB := e.loginOn(t, a, u), e.loginOn(t, b, u)
		vA, vB := e.loginOn(t, a, v), e.loginOn(t, b, v)
		held(t, e, a, uA)
		held(t, e, a2, uA)
		held(t, e, a2, vA)
		if !checkOf(t, b)(uB) {
			t.Fatal("the Sku B token is not valid")
		}
		userID := a.ExtractOpenID(uA)

		if err := b.DeleteUser(bg, userID); err != nil { // from the other Sku
			t.Fatal(err)
		}
		for name, check := range map[string]func() bool{
			"Sku A, the instance that issued it": func() bool { return checkOf(t, a)(uA) },
			"Sku A, another instance":            func() bool { return checkOf(t, a2)(uA) },
			"Sku B":                              func() bool { return checkOf(t, b)(uB) },
		} {
			if check() {
				t.Errorf("%s: the deleted user's token validates after DeleteUser returned", name)
			}
		}
		for _, sku := range []string{e.cfg.Sku, skuB} {
			if left := userRedisKeys(t, e.rdb, userID, sku); len(left) > 0 {
				t.Errorf("keys left: %q", left)
			}
		}
		if !checkOf(t, a2)(vA) || !checkOf(t, b)(vB) {
			t.Error("another user's tokens were ended")
		}
		if _, err := a.User(bg, userID); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
			t.Errorf("User after DeleteUser: %v, want 6010", err)
		}
		if _, err := a.RefreshToken(bg, userID); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
			t.Errorf("RefreshToken after DeleteUser: %v, want 6010", err)
		}
		if n := e.identitiesOf(t, userID); n != 0 {
			t.Errorf("%d identities left", n)
		}
		if _, err := a.User(bg, v.OpenID); err != nil {
			t.Errorf("another user's row: %v", err)
		}
		if _, err := a.Decrypt(bg, userID, "x", "y"); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt after DeleteUser: %v, want 6014", err)
		}

		if err := a.DeleteUser(bg, userID); err != nil {
			t.Errorf("a second DeleteUser: %v", err)
		}
		again := e.loginOn(t, a, u)
		if again == uA || !checkOf(t, a)(again) {
			t.Error("a later login did not get a new, valid token")
		}
		if _, err := a.User(bg, a.ExtractOpenID(again)); err != nil {
			t.Errorf("the new user: %v", err)
		}
	})
}

// identitiesOf counts userID's rows in the identity table.
func (e *env) identitiesOf(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := e.queryRow(`SELECT count(*) FROM user_identity WHERE "userId" = ?`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteUserLeavesNoTraceInSQLite checks that once DeleteUser
// returns, the raw SQLite file and its WAL hold neither the user's openid
// nor their phone number, which they held before.
func TestDeleteUserLeavesNoTraceInSQLite(t *testing.T) {
	e := newWorld(t)
	path := filepath.Join(t.TempDir(), "trace.db")
	db, err := mpauthx.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db, e.cfg.DB = db, db
	e.rdb, e.mr = backends()[0].open(t)
	e.cfg.Redis = e.rdb
	e.open(t)
	const phone = "13912345678"
	gone := e.wx.AddUser(mpauthxtest.User{OpenID: "o-gone-" + rand.Text()[:10], Phone: phone, NickName: "Gone"})
	var others []mpauthxtest.User
	for i := range 50 { // rows around the user's, on the same pages
		others = append(others, e.wx.AddUser(mpauthxtest.User{OpenID: fmt.Sprintf("o-other-%03d-%s", i, rand.Text()[:6]), Phone: fmt.Sprintf("137%08d", i)}))
	}
	for _, u := range append([]mpauthxtest.User{gone}, others...) {
		if _, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)); err != nil {
			t.Fatal(err)
		}
	}
	holds := func(s string) []string {
		var in []string
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(s)) {
				in = append(in, filepath.Base(f))
			}
		}
		return in
	}
	if len(holds(gone.OpenID)) == 0 || len(holds(phone)) == 0 {
		t.Fatal("the files do not hold the user before the deletion: the test proves nothing")
	}
	if err := e.c.DeleteUser(bg, gone.OpenID); err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"openid": gone.OpenID, "phone number": phone} {
		if in := holds(s); len(in) > 0 {
			t.Errorf("after DeleteUser, %v hold the %s", in, what)
		}
	}
	if u, err := e.c.User(bg, others[7].OpenID); err != nil || u.Phone != others[7].Phone {
		t.Errorf("another user: %+v, %v", u, err)
	}
}

// TestDeleteUserUntaggedID checks DeleteUser for a user ID starting with
// '}', whose keys have no hash tag and may sit in different Cluster
// slots: each is deleted on its own.
func TestDeleteUserUntaggedID(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		b := e.client(t, func(cfg *mpauthx.Config) { cfg.Sku += "-b" })
		const id = "}odd{id"
		ta, err := mpauthx.Issue(bg, e.c, id, "o-odd", "c2Vzc2lvbmtleQ==")
		if err != nil {
			t.Fatal(err)
		}
		tb, err := mpauthx.Issue(bg, b, id, "o-odd", "c2Vzc2lvbmtleQ==")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.c.DeleteUser(bg, id); err != nil {
			t.Fatal(err)
		}
		if checkOf(t, e.c)(ta.Response) || checkOf(t, b)(tb.Response) {
			t.Error("a token validates after DeleteUser")
		}
	})
}

// TestDeleteUserArguments checks DeleteUser's refusals: an empty or
// invalid user ID (6001), a closed Client, a ctx that ended.
func TestDeleteUserArguments(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	for _, id := range []string{"", "a|b", strings.Repeat("x", 257)} {
		if err := e.c.DeleteUser(bg, id); mpauthx.Code(err) != mpauthx.StatusRequiredParamsMissing {
			t.Errorf("DeleteUser(%q): %v, want 6001", id, err)
		}
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := e.c.DeleteUser(ctx, "o-someone"); mpauthx.Code(err) != mpauthx.StatusDatabaseError || !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteUser with a cancelled ctx: %v, want 6000 wrapping context.Canceled", err)
	}
	e.c.Close()
	if err := e.c.DeleteUser(bg, "o-someone"); !errors.Is(err, mpauthx.ErrClosed) {
		t.Errorf("DeleteUser after Close: %v, want ErrClosed", err)
	}
}

// TestSkuRegistry checks that a Client adds its Sku to the registry
// DeleteUser reads before it stores its first token, and not before
// (New does not contact Redis).
func TestSkuRegistry(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		registered := func() bool {
			ok, err := e.rdb.SIsMember(bg, skuRegistryKey, e.cfg.Sku).Result()
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if registered() {
			t.Fatal("registered before any token")
		}
		e.login(t, e.user("rita"))
		if !registered() {
			t.Fatal("not registered after a login")
		}
	})
}
