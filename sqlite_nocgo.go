//go:build !cgo

package mpauthx

import "errors"

// errNoSQLite is OpenSQLite's error in a build without cgo, where
// github.com/mattn/go-sqlite3 is a stub: its driver type still exists (so
// New tells a SQLite *sql.DB from a pgx one) but cannot open a database.
// PostgreSQL, through pgx, needs no cgo.
var errNoSQLite = errors.New("mpauthx: OpenSQLite: SQLite (github.com/mattn/go-sqlite3) needs cgo, and this binary was built with CGO_ENABLED=0; build with cgo and a C compiler, or keep the user table in PostgreSQL (OpenPostgres)")

// isBusy is false: without cgo no SQLite error ever reaches the store.
func isBusy(error) bool { return false }
