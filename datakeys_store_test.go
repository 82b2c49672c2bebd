package mpauthx

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// withKeys returns a store of instance that seals phone numbers with
// keys (none: in clear), after its sealing pass.
func withKeys(t *testing.T, instance func(bool) *store, keys ...string) *store {
	t.Helper()
	s := instance(true)
	var d *dataKeys
	if len(keys) > 0 {
		d = mustDataKeys(t, keys...)
	}
	if err := s.useDataKeys(context.Background(), d, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return s
}

// textHolding returns the "table.column" of every value of the user
// and identity tables that contains s.
func textHolding(t *testing.T, db *sql.DB, s string) []string {
	t.Helper()
	var found []string
	for _, table := range []string{"user", "user_identity"} {
		q := "SELECT * FROM " + table
		if isPostgres(db) {
			q = `SELECT * FROM "` + table + `"`
		}
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if v != nil && strings.Contains(fmt.Sprintf("%s", v), s) {
					found = append(found, table+"."+cols[i])
				}
			}
		}
		rows.Close()
	}
	return found
}

// TestDataKeysStore checks the phone numbers of the user table with
// DataKeys, on SQLite and PostgreSQL: numbers stored in clear before the
// keys are sealed when the keys are first given; with keys no column
// ever holds a number; User reads them and LinkByPhone finds their
// users; rotating keys seals them again under the new first key, after
// which the old key can go; a table with sealed numbers is refused
// without keys.
func TestDataKeysStore(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			ctx := context.Background()
			phones := []string{"13800000001", "13800000002", "13800000003"}
			plain := withKeys(t, instance)
			u1 := mustLogin(t, plain, ident(WeChatMiniProgram, "wx", "o-1", ""), phones[0])
			u2 := mustLogin(t, plain, ident(WeChatMiniProgram, "wx", "o-2", ""), phones[1])
			if len(textHolding(t, db, phones[0])) == 0 {
				t.Fatal("no column holds a clear phone before the keys: the test proves nothing")
			}

			k1, k2 := newTestDataKey(), newTestDataKey()
			s1 := withKeys(t, instance, k1) // the keys are first given
			u3 := mustLogin(t, s1, ident(WeChatMiniProgram, "wx", "o-3", ""), phones[2])
			noClearPhones := func(when string) {
				t.Helper()
				for _, p := range phones {
					if cols := textHolding(t, db, p); len(cols) > 0 {
						t.Errorf("%s: %v hold the phone number %s", when, cols, p)
					}
				}
			}
			noClearPhones("with keys")
			readsPhones := func(s *store, when string) {
				t.Helper()
				for i, id := range []string{u1, u2, u3} {
					if u, _, err := s.user(ctx, id, WeChatMiniProgram, "wx"); err != nil || u.Phone != phones[i] {
						t.Errorf("%s: user %s has phone %q, %v; want %s", when, id, u.Phone, err, phones[i])
					}
				}
			}
			readsPhones(s1, "with keys")
			if got := mustLogin(t, s1, ident(DouyinMiniProgram, "tt", "o-tt-1", ""), phones[0]); got != u1 {
				t.Errorf("LinkByPhone with a sealed phone found %q, want %q", got, u1)
			}

			// Rotation: a new first key; the pass seals again under it.
			s2 := withKeys(t, instance, k2, k1)
			indexed := func(like string) int {
				q := `SELECT count(*) FROM user WHERE phoneIndex LIKE ?`
				if isPostgres(db) {
					q = `SELECT count(*) FROM "user" WHERE "phoneIndex" LIKE $1`
				}
				var n int
				if err := db.QueryRow(q, like).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := indexed("%"); n != 3 {
				t.Fatalf("%d indexed phones, want 3", n)
			}
			if n := indexed(mustDataKeys(t, k2).firstID() + ".%"); n != 3 {
				t.Errorf("%d phones sealed under the new key after the rotation, want 3", n)
			}
			readsPhones(s2, "after the rotation")
			noClearPhones("after the rotation")
			s3 := withKeys(t, instance, k2) // the old key dropped
			readsPhones(s3, "with the new key alone")
			if got := mustLogin(t, s3, ident(DouyinMiniProgram, "tt", "o-tt-2", ""), phones[1]); got != u2 {
				t.Errorf("LinkByPhone after the rotation found %q, want %q", got, u2)
			}

			// Keys forgotten: refused, with an error that quotes no key.
			err := instance(true).useDataKeys(ctx, nil, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), "Config.DataKeys") {
				t.Errorf("a table of sealed phones without keys: %v", err)
			}
		})
	}
}
