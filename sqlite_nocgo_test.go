//go:build !cgo

package mpauthx_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
)

// TestOpenSQLiteWithoutCgo checks, in a build without cgo (CI runs it with
// CGO_ENABLED=0), that OpenSQLite says SQLite needs cgo and points to
// PostgreSQL, and that New still recognises the SQLite driver's stub.
func TestOpenSQLiteWithoutCgo(t *testing.T) {
	db, err := mpauthx.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err == nil {
		db.Close()
		t.Fatal("OpenSQLite succeeded without cgo")
	}
	for _, w := range []string{"cgo", "OpenPostgres"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("OpenSQLite: %q does not mention %s", err, w)
		}
	}
	stub, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	c, err := mpauthx.New(mpauthx.Config{AppID: "wx", AppSecret: "s", Sku: "sku", DB: stub, RedisAddr: "127.0.0.1:1"})
	if err == nil {
		c.Close()
		t.Fatal("New succeeded on the SQLite stub")
	}
	if !strings.Contains(err.Error(), "mpauthx.Schema") {
		t.Errorf("New on the SQLite stub: %q, want the SQLite dialect's advice", err)
	}
}
