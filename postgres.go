package mpauthx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Pool defaults of OpenPostgres. database/sql keeps only two idle
// connections by default, so a burst of logins would open and close a
// PostgreSQL connection (a server process) per query; ten kept open serve
// thousands of logins a second and leave room for many instances under
// PostgreSQL's default max_connections of 100.
const (
	postgresMaxConns        = 10
	postgresConnMaxIdleTime = 5 * time.Minute
)

// postgresSchemaLock is the key of the transaction-level advisory lock
// OpenPostgres holds while it creates the user table ("mpauthx" in ASCII),
// so that instances starting at once on an empty database do not race in
// CREATE TABLE IF NOT EXISTS, which PostgreSQL does not make atomic.
const postgresSchemaLock int64 = 0x6d706175746878

// postgresSchemaLockSQL is postgresSchemaLock as an SQL literal, for the
// migration's statements, which take no arguments.
const postgresSchemaLockSQL = "30804336346163320"

// OpenPostgres opens the PostgreSQL database of dsn for mpauthx through the
// pgx driver (github.com/jackc/pgx/v5/stdlib), checks that it answers, and
// creates the user table of PostgresSchema unless it exists already; an
// existing table is used as it is, so the application's role needs the
// CREATE privilege only the first time. Several instances may call it at
// once on an empty database: the creation is serialised with an advisory
// lock.
//
// dsn is a pgx connection string, a URL such as
// "postgres://app:password@db.internal:5432/app?sslmode=verify-full" or
// key=value pairs; a search_path parameter selects the schema. An error
// never holds the dsn's password: one that does not parse is not quoted at
// all, and one that cannot connect is named by its user, database and host. The pool
// keeps up to 10 connections open (change it with SetMaxOpenConns and
// SetMaxIdleConns). The caller owns the returned *sql.DB and closes it.
//
// A *sql.DB opened some other way through pgx (sql.Open("pgx", dsn),
// stdlib.OpenDB, stdlib.OpenDBFromPool) works with New just as well, once
// the table exists.
func OpenPostgres(dsn string) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("mpauthx: OpenPostgres: empty dsn")
	}
	// pgx's parse errors quote the dsn with its password masked, but the
	// masking misses some forms (a key=value password with an escaped
	// space, an unterminated quote): no part of the dsn goes into the
	// error. pgx's connect errors name the user, database and host, never
	// the password.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("mpauthx: OpenPostgres: cannot parse the dsn (want a postgres:// URL or key=value pairs)")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(postgresConnMaxIdleTime)
	ctx, cancel := context.WithTimeout(context.Background(), tableCheckTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mpauthx: OpenPostgres: %w", err)
	}
	if err := createPostgresTable(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("mpauthx: OpenPostgres: %w", err)
	}
	return db, nil
}

// createPostgresTable creates the user table unless a usable one exists.
func createPostgresTable(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, postgresDialect.check); err == nil {
		return nil
	} else if _, terr := db.ExecContext(ctx, `SELECT FROM "user" WHERE false`); terr == nil {
		// The table exists: made by another instance since the check
		// (then the check passes now), or one without our columns.
		if _, err := db.ExecContext(ctx, postgresDialect.check); err != nil {
			return fmt.Errorf("the user table exists but lacks the columns of mpauthx.PostgresSchema: %w", err)
		}
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating the user table: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", postgresSchemaLock); err != nil {
		return fmt.Errorf("locking for the user table: %w", err)
	}
	// The lock is taken before this statement's snapshot, so an instance
	// that waited sees the table its predecessor committed.
	if _, err := tx.ExecContext(ctx, PostgresSchema); err != nil {
		return fmt.Errorf("creating the user table with mpauthx.PostgresSchema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("creating the user table: %w", err)
	}
	if _, err := db.ExecContext(ctx, postgresDialect.check); err != nil {
		return fmt.Errorf("the user table exists but lacks the columns of mpauthx.PostgresSchema: %w", err)
	}
	return nil
}
