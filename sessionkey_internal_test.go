package mpauthx

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestSealerBoundToAppID: the sealing key is derived from the AppID as
// well as the AppSecret, so that two apps given the same secret (or one
// app's secret reused by mistake) cannot open each other's sealed values,
// whatever the associated data.
func TestSealerBoundToAppID(t *testing.T) {
	const secret, ad = "one-secret-for-two-apps", "mpauthx:{u|sku}:sks"
	a, b := newSealer(secret, "wx-app-a"), newSealer(secret, "wx-app-b")
	blob := a.seal([]byte("o-a\x00session-key"), ad)
	if plain, err := a.open(blob, ad); err != nil || string(plain) != "o-a\x00session-key" {
		t.Fatalf("open under its own app = %q, %v", plain, err)
	}
	if plain, err := b.open(blob, ad); err == nil {
		t.Fatalf("another AppID with the same secret opened it: %q", plain)
	}
}

// TestSessionKeyOfAnotherAppRefused: a session key that app B sealed,
// found where app A reads (an older layout, a copy, a mistake), with the
// same AppSecret, is no session key for A: 6014, not B's key.
func TestSessionKeyOfAnotherAppRefused(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	db, err := OpenSQLite(t.TempDir() + "/u.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newClient := func(appID string) *Client {
		c, err := New(Config{AppID: appID, AppSecret: "one-secret", Sku: "sku", Redis: rdb, DB: db})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := newClient("wx-app-a"), newClient("wx-app-b")
	ctx := context.Background()
	const userID = "u-both"
	// B's sealed key, with the associated data A expects, in A's field.
	blob := b.seal.seal([]byte("o-b\x00b-session-key"), a.skSealAD(userID))
	if err := rdb.HSet(ctx, a.skKey(userID), a.appID, blob).Err(); err != nil {
		t.Fatal(err)
	}
	if _, sk, err := a.loadSessionKey(ctx, userID); Code(err) != StatusSessionKeyMissing {
		t.Fatalf("A loaded %q, %v; want 6014", sk, err)
	}
	// The same with A's own sealer opens: the test would see a leak.
	if err := rdb.HSet(ctx, a.skKey(userID), a.appID, a.seal.seal([]byte("o-a\x00a-session-key"), a.skSealAD(userID))).Err(); err != nil {
		t.Fatal(err)
	}
	if openID, sk, err := a.loadSessionKey(ctx, userID); err != nil || openID != "o-a" || sk != "a-session-key" {
		t.Fatalf("A's own key = %q, %q, %v", openID, sk, err)
	}
}
