package mpauthx_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// newDataKey returns a fresh data key, as openssl rand -base64 32 makes.
func newDataKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestDataKeysSQLiteFile checks, on the raw SQLite file and its WAL,
// that phone numbers stored in clear before DataKeys are gone from both
// once a Client with keys starts, that phone logins with keys never
// write one, and that User still returns them; then that a Client with
// another AppSecret (WeChat lets an app reset it) reads them all, and
// that a Client without the keys is refused.
func TestDataKeysSQLiteFile(t *testing.T) {
	e := newWorld(t)
	path := filepath.Join(t.TempDir(), "sealed.db")
	db, err := mpauthx.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db, e.cfg.DB = db, db
	e.rdb, e.mr = backends()[0].open(t)
	e.cfg.Redis = e.rdb
	e.open(t) // no keys yet
	var users []mpauthxtest.User
	for i := range 40 {
		users = append(users, e.wx.AddUser(mpauthxtest.User{OpenID: fmt.Sprintf("o-sealed-%02d-%s", i, rand.Text()[:6]), Phone: fmt.Sprintf("136%08d", 1000+i)}))
	}
	login := func(c *mpauthx.Client, u mpauthxtest.User) string {
		t.Helper()
		res, err := c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		return res.Response
	}
	for _, u := range users[:20] {
		login(e.c, u)
	}
	inFiles := func(u mpauthxtest.User) bool {
		for _, f := range []string{path, path + "-wal"} {
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte(u.Phone)) {
				return true
			}
		}
		return false
	}
	if !inFiles(users[0]) {
		t.Fatal("the file holds no clear phone before the keys: the test proves nothing")
	}

	e.cfg.DataKeys = []string{newDataKey()}
	withKeys := e.client(t, func(*mpauthx.Config) {})
	var tokens []string
	for _, u := range users[20:] {
		tokens = append(tokens, login(withKeys, u))
	}
	for _, u := range users {
		if inFiles(u) {
			t.Errorf("the SQLite file or its WAL holds the phone number of %s", u.OpenID)
		}
		if got, err := withKeys.User(bg, u.OpenID); err != nil || got.Phone != u.Phone {
			t.Errorf("User(%s).Phone = %q, %v; want %s", u.OpenID, got.Phone, err, u.Phone)
		}
	}

	reset := e.client(t, func(cfg *mpauthx.Config) { cfg.AppSecret = "a-new-app-secret" })
	for _, u := range users {
		if got, err := reset.User(bg, u.OpenID); err != nil || got.Phone != u.Phone {
			t.Errorf("after an AppSecret reset, User(%s).Phone = %q, %v", u.OpenID, got.Phone, err)
		}
	}
	rotated := e.client(t, func(cfg *mpauthx.Config) { cfg.DataKeys = []string{newDataKey(), cfg.DataKeys[0]} })
	for i, tok := range tokens { // rotation logs nobody out
		if ok, err := rotated.IsTokenValid(bg, tok); err != nil || !ok {
			t.Errorf("after the rotation the token of %s is not valid: %v", users[20+i].OpenID, err)
		}
	}
	cfg := e.cfg
	cfg.DataKeys = nil
	if c, err := mpauthx.New(cfg); err == nil {
		c.Close()
		t.Error("New without the keys accepted a table of sealed phone numbers")
	}
}
