package mpauthx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
)

// Schema creates the user table of the Node.js original, so that its
// databases keep working. The openId column holds the user ID of a token:
// the unionId when WeChat gives one, else the openId.
const Schema = `CREATE TABLE IF NOT EXISTS user(
  openId text primary key not null,
  city text, country text, gender integer,
  language text, nickName text, province text)`

// PostgresSchema creates the user table of Schema in PostgreSQL: the same
// table and column names, quoted, because user is a reserved word there and
// PostgreSQL folds unquoted names to lower case ("openId" stays openId).
// OpenPostgres runs it; run it yourself (or your migration tool's
// equivalent) when the application's role may not create tables.
const PostgresSchema = `CREATE TABLE IF NOT EXISTS "user"(
  "openId" text PRIMARY KEY NOT NULL,
  "city" text, "country" text, "gender" integer,
  "language" text, "nickName" text, "province" text)`

// dialect holds the SQL of one database engine. Every statement is
// parameterised and matches user IDs exactly (never with LIKE).
type dialect struct {
	name          string
	howToCreate   string // the end of New's error when the table is missing
	check         string // fails unless the table and its columns exist
	exists        string // one row when the user exists
	insertMissing string // adds a user row without a profile; no-op when present
	upsert        string // adds or updates a user row with its profile
	// oneWriter marks SQLite, whose one connection every login waits for:
	// its statements are prepared once, in New (SQLite spends much of a
	// short statement compiling it), and concurrent profile upserts share
	// one transaction (upsertBatcher). PostgreSQL writes in parallel on a
	// pool, pgx caches prepared statements by itself, and explicit ones
	// would break behind a transaction-pooling proxy such as PgBouncer.
	oneWriter bool
}

var sqliteDialect = dialect{
	name:          "sqlite3",
	howToCreate:   "create it with mpauthx.Schema, or open the database with mpauthx.OpenSQLite, which does",
	check:         `SELECT openId, city, country, gender, language, nickName, province FROM user WHERE 0`,
	exists:        `SELECT 1 FROM user WHERE openId = ?`,
	insertMissing: `INSERT INTO user(openId) VALUES(?) ON CONFLICT(openId) DO NOTHING`,
	upsert: `INSERT INTO user(openId, city, country, gender, language, nickName, province)
VALUES(?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(openId) DO UPDATE SET city = excluded.city, country = excluded.country,
gender = excluded.gender, language = excluded.language, nickName = excluded.nickName,
province = excluded.province`,
	oneWriter: true,
}

var postgresDialect = dialect{
	name:          "pgx",
	howToCreate:   "create it with mpauthx.PostgresSchema, or open the database with mpauthx.OpenPostgres, which does",
	check:         `SELECT "openId", "city", "country", "gender", "language", "nickName", "province" FROM "user" WHERE false`,
	exists:        `SELECT 1 FROM "user" WHERE "openId" = $1`,
	insertMissing: `INSERT INTO "user"("openId") VALUES($1) ON CONFLICT ("openId") DO NOTHING`,
	upsert: `INSERT INTO "user"("openId", "city", "country", "gender", "language", "nickName", "province")
VALUES($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT ("openId") DO UPDATE SET "city" = EXCLUDED."city", "country" = EXCLUDED."country",
"gender" = EXCLUDED."gender", "language" = EXCLUDED."language", "nickName" = EXCLUDED."nickName",
"province" = EXCLUDED."province"`,
}

// store is the SQL user table.
type store struct {
	db *sql.DB
	d  dialect
	// The dialect's statements, prepared when d.oneWriter (nil otherwise).
	existsStmt, insertMissingStmt, upsertStmt *sql.Stmt
	batch                                     *upsertBatcher // nil unless d.oneWriter
}

// dialectFor picks the dialect from the driver behind db.
func dialectFor(drv driver.Driver) (dialect, error) {
	switch drv.(type) {
	case *sqlite3.SQLiteDriver:
		return sqliteDialect, nil
	case *stdlib.Driver:
		return postgresDialect, nil
	}
	return dialect{}, fmt.Errorf("mpauthx: Config.DB uses an unsupported driver %T; supported: sqlite3 (github.com/mattn/go-sqlite3) and pgx (github.com/jackc/pgx/v5/stdlib, for PostgreSQL)", drv)
}

// newStore returns the store of db after checking that its user table
// exists.
func newStore(ctx context.Context, db *sql.DB) (*store, error) {
	d, err := dialectFor(db.Driver())
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, d.check); err != nil {
		return nil, fmt.Errorf("mpauthx: Config.DB has no usable user table (%w); %s", err, d.howToCreate)
	}
	s := &store{db: db, d: d}
	if d.oneWriter {
		for _, p := range []struct {
			stmt  **sql.Stmt
			query string
		}{{&s.existsStmt, d.exists}, {&s.insertMissingStmt, d.insertMissing}, {&s.upsertStmt, d.upsert}} {
			if *p.stmt, err = db.PrepareContext(ctx, p.query); err != nil {
				s.close()
				return nil, fmt.Errorf("mpauthx: preparing the user table's statements: %w", err)
			}
		}
		s.batch = newUpsertBatcher(db, s.upsertStmt)
	}
	return s, nil
}

// close stops the batcher and releases the prepared statements, if any.
func (s *store) close() error {
	if s.batch != nil {
		s.batch.close()
	}
	var errs []error
	for _, st := range []*sql.Stmt{s.existsStmt, s.insertMissingStmt, s.upsertStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// queryRow runs a statement returning one row: prepared when stmt is not
// nil, else query on the pool.
func (s *store) queryRow(ctx context.Context, stmt *sql.Stmt, query string, args ...any) *sql.Row {
	if stmt != nil {
		return stmt.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

// exec runs a statement: prepared when stmt is not nil, else query on
// the pool.
func (s *store) exec(ctx context.Context, stmt *sql.Stmt, query string, args ...any) error {
	var err error
	if stmt != nil {
		_, err = stmt.ExecContext(ctx, args...)
	} else {
		_, err = s.db.ExecContext(ctx, query, args...)
	}
	return err
}

// exists reports whether userID has a row.
func (s *store) exists(ctx context.Context, userID string) (bool, error) {
	var one int
	err := s.queryRow(ctx, s.existsStmt, s.d.exists, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ensure adds a row for userID unless one exists, leaving a profile alone.
// A returning user costs one read.
func (s *store) ensure(ctx context.Context, userID string) error {
	found, err := s.exists(ctx, userID)
	if err != nil || found {
		return err
	}
	return s.exec(ctx, s.insertMissingStmt, s.d.insertMissing, userID)
}

// upsert adds or updates userID's row with the profile u, normalised.
func (s *store) upsert(ctx context.Context, userID string, u *UserInfo) error {
	p := normalizeProfile(u)
	args := []any{userID, p.city, p.country, p.gender, p.language, p.nickName, p.province}
	if s.batch != nil {
		return s.batch.upsert(ctx, args...)
	}
	return s.exec(ctx, s.upsertStmt, s.d.upsert, args...)
}

// OpenSQLite opens (creating if needed) the SQLite database at path for
// mpauthx: WAL journal, synchronous=NORMAL, a 5 s busy timeout, and the user
// table of Schema. The pool is limited to one connection: SQLite admits one
// writer at a time, and queueing in the pool is far cheaper than SQLite's
// busy-wait sleeps when many goroutines log in at once. A Client call
// therefore waits while anyone else holds that connection: do not call the
// Client inside a transaction of this *sql.DB or while iterating its Rows,
// and keep your own tables on another *sql.DB. The caller owns the
// returned *sql.DB and closes it.
//
// SQLite needs cgo: in a build with CGO_ENABLED=0, OpenSQLite returns an
// error saying so (the rest of the package works, with PostgreSQL).
func OpenSQLite(path string) (*sql.DB, error) {
	if errNoSQLite != nil {
		return nil, errNoSQLite
	}
	if path == "" {
		return nil, errors.New("mpauthx: OpenSQLite: empty path")
	}
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	dsn := "file:" + esc + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("mpauthx: OpenSQLite: %w", err)
	}
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), tableCheckTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("mpauthx: OpenSQLite %s: %w", path, err)
	}
	return db, nil
}
