package mpauthx

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPostgresSchemaLockSQL checks that the migration takes the advisory
// lock OpenPostgres takes.
func TestPostgresSchemaLockSQL(t *testing.T) {
	if got := strconv.FormatInt(postgresSchemaLock, 10); got != postgresSchemaLockSQL {
		t.Fatalf("postgresSchemaLockSQL = %s, want %s", postgresSchemaLockSQL, got)
	}
}

// TestFindUsesIndexes checks that every lookup of a login, of Link and of
// User reads the tables through their indexes only, with the number of
// index searches each should make: a full scan would make every login's
// cost grow with the number of users.
func TestFindUsesIndexes(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := newStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for _, tt := range []struct {
		q        query
		args     []any
		searches int
	}{
		{qExists, []any{"o-id"}, 1},
		{qIdentity, []any{"wechat", "wx-app", "o-openid"}, 1},
		{qByUnionID, []any{"wechat", "u-unionid"}, 1},
		{qLegacy, []any{"o-openid", "u-unionid"}, 4},
		{qByPhone, []any{"13800138000"}, 1},
		{qUser, []any{"o-id"}, 1},
		{qIdentities, []any{"o-id"}, 1},
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+sqliteDialect.q[tt.q], tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		searches := 0
		for _, d := range plan {
			if strings.HasPrefix(d, "SCAN user") {
				t.Errorf("query %d scans a table: %q", tt.q, plan)
			}
			if strings.HasPrefix(d, "SEARCH user") {
				searches++
			}
		}
		if searches != tt.searches {
			t.Errorf("query %d makes %d index searches, want %d: %q", tt.q, searches, tt.searches, plan)
		}
	}
}
