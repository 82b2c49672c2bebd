# shellcheck shell=bash
# The package without cgo: everything but SQLite must build and work with
# CGO_ENABLED=0 (PostgreSQL through pgx needs no C compiler), and
# OpenSQLite must say why it cannot open a database. Fails if a file
# outside sqlite_cgo.go uses go-sqlite3's cgo-only API.
#
# Sourced by .ci/run (under set -euo pipefail) from the repository root;
# it also runs on its own: bash .ci/checks/05-nocgo.sh.
(
	set -euo pipefail
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	echo "CGO_ENABLED=0 go build ./... && go vet ./..."
	CGO_ENABLED=0 go build ./...
	CGO_ENABLED=0 go vet ./...
	echo "CGO_ENABLED=0 go test -run 'TestOpenSQLiteWithoutCgo|TestNewDetectsDialect' ."
	out=$(CGO_ENABLED=0 go test -count=1 -run '^(TestOpenSQLiteWithoutCgo|TestNewDetectsDialect)$' -v .)
	grep -E '^(--- |ok|FAIL)' <<<"$out"
	[[ $out == *'--- PASS: TestOpenSQLiteWithoutCgo'* ]] ||
		{ echo "TestOpenSQLiteWithoutCgo did not run without cgo" >&2; exit 1; }
)
