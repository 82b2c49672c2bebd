//go:build cgo

package mpauthx

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// errNoSQLite is nil: with cgo, github.com/mattn/go-sqlite3 works.
var errNoSQLite error

// isBusy reports whether err is SQLite's "database is locked" or "table
// is locked": retrying row by row would only wait the busy timeout again.
func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}
