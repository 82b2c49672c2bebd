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

// TestFindUsesIndexes checks that the lookup of a login's row reads the
// user table through its indexes only: a full scan would make every
// login's cost grow with the number of users.
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
	rows, err := db.Query("EXPLAIN QUERY PLAN "+sqliteDialect.q[qFind], "o-openid", "u-unionid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	searches := 0
	for _, d := range plan {
		if strings.HasPrefix(d, "SCAN user") {
			t.Errorf("the lookup scans the user table: %q", plan)
		}
		if strings.HasPrefix(d, "SEARCH user USING") {
			searches++
		}
	}
	if searches != 4 {
		t.Errorf("the lookup makes %d index searches, want 4: %q", searches, plan)
	}
}
