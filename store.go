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
// databases keep working, with the columns and indexes mpauthx adds: the
// openId column holds the user ID of a token (the unionId when WeChat
// gave one at the first login, else the openId), wxOpenId the user's
// openid in this mini program, unionId the unionid when known and phone
// the pure phone number of a phone-number login. New adds the new columns
// and indexes to a table of the original in place.
const Schema = `CREATE TABLE IF NOT EXISTS user(
  openId text primary key not null,
  city text, country text, gender integer,
  language text, nickName text, province text,
  wxOpenId text, unionId text, phone text);
CREATE UNIQUE INDEX IF NOT EXISTS user_wxOpenId ON user(wxOpenId);
CREATE UNIQUE INDEX IF NOT EXISTS user_unionId ON user(unionId)`

// PostgresSchema creates the user table of Schema in PostgreSQL: the same
// table, column and index names, quoted, because user is a reserved word
// there and PostgreSQL folds unquoted names to lower case ("openId" stays
// openId). OpenPostgres runs it; run it yourself (or your migration tool's
// equivalent) when the application's role may not create tables.
const PostgresSchema = `CREATE TABLE IF NOT EXISTS "user"(
  "openId" text PRIMARY KEY NOT NULL,
  "city" text, "country" text, "gender" integer,
  "language" text, "nickName" text, "province" text,
  "wxOpenId" text, "unionId" text, "phone" text);
CREATE UNIQUE INDEX IF NOT EXISTS "user_wxOpenId" ON "user"("wxOpenId");
CREATE UNIQUE INDEX IF NOT EXISTS "user_unionId" ON "user"("unionId")`

// dialect holds the SQL of one database engine. Every statement is
// parameterised and matches user IDs exactly (never with LIKE).
type dialect struct {
	name        string
	howToCreate string // the end of New's error when the table is missing
	check       string // fails unless the table and the original's columns exist
	// migrated counts the indexes of Schema and fails unless its added
	// columns exist; migrate adds what is missing (see store.migrate).
	migrated string
	migrate  []string
	q        [numQueries]string
	// oneWriter marks SQLite, whose one connection every login waits for:
	// its statements are prepared once, in New (SQLite spends much of a
	// short statement compiling it), and concurrent profile upserts share
	// one transaction (upsertBatcher). PostgreSQL writes in parallel on a
	// pool, pgx caches prepared statements by itself, and explicit ones
	// would break behind a transaction-pooling proxy such as PgBouncer.
	oneWriter bool
}

// query names a statement of a dialect.
type query int

const (
	qExists query = iota // one row when the user ID exists
	qFind                // the row of a WeChat user (openid, unionid), one index lookup a branch: see on.resolve
	qInsert              // adds a user row without a profile; no-op on any conflict
	qLink                // records openid and unionid on a row that lacks them
	qUpsert              // adds or updates a user row with its profile
	qPhone               // records the phone number
	qUser                // reads a row back
	numQueries
)

// migratedIndexes is how many of Schema's indexes dialect.migrated must
// count.
const migratedIndexes = 2

// addedColumns are the columns mpauthx adds to the original's table.
var addedColumns = []string{"wxOpenId", "unionId", "phone"}

var sqliteDialect = dialect{
	name:        "sqlite3",
	howToCreate: "create it with mpauthx.Schema, or open the database with mpauthx.OpenSQLite, which does",
	check:       `SELECT openId, city, country, gender, language, nickName, province FROM user WHERE 0`,
	migrated: `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('user_wxOpenId', 'user_unionId')
AND (SELECT count(*) FROM (SELECT wxOpenId, unionId, phone FROM user WHERE 0)) = 0`,
	migrate: []string{
		`ALTER TABLE user ADD COLUMN wxOpenId text`,
		`ALTER TABLE user ADD COLUMN unionId text`,
		`ALTER TABLE user ADD COLUMN phone text`,
		`CREATE UNIQUE INDEX IF NOT EXISTS user_wxOpenId ON user(wxOpenId)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS user_unionId ON user(unionId)`,
	},
	q: [numQueries]string{
		qExists: `SELECT 1 FROM user WHERE openId = ?`,
		qFind: `SELECT openId, wxOpenId IS NULL, unionId IS NULL FROM (
  SELECT 0 AS r, openId, wxOpenId, unionId FROM user WHERE wxOpenId = ?1
  UNION ALL SELECT 1, openId, wxOpenId, unionId FROM user WHERE unionId = ?2
  UNION ALL SELECT 2, openId, wxOpenId, unionId FROM user WHERE openId = ?2
  UNION ALL SELECT 3, openId, wxOpenId, unionId FROM user WHERE openId = ?1
) ORDER BY r LIMIT 1`,
		qInsert: `INSERT INTO user(openId, wxOpenId, unionId) VALUES(?, ?, NULLIF(?, '')) ON CONFLICT DO NOTHING`,
		qLink: `UPDATE user SET
wxOpenId = CASE WHEN wxOpenId IS NULL AND NOT EXISTS (SELECT 1 FROM user WHERE wxOpenId = ?2) THEN ?2 ELSE wxOpenId END,
unionId = CASE WHEN unionId IS NULL AND ?3 <> '' AND NOT EXISTS (SELECT 1 FROM user WHERE unionId = ?3) THEN ?3 ELSE unionId END
WHERE openId = ?1`,
		qUpsert: `INSERT INTO user(openId, city, country, gender, language, nickName, province)
VALUES(?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(openId) DO UPDATE SET city = excluded.city, country = excluded.country,
gender = excluded.gender, language = excluded.language, nickName = excluded.nickName,
province = excluded.province`,
		qPhone: `UPDATE user SET phone = ? WHERE openId = ?`,
		qUser: `SELECT openId, COALESCE(wxOpenId, ''), COALESCE(unionId, ''), COALESCE(phone, ''),
COALESCE(nickName, ''), COALESCE(city, ''), COALESCE(province, ''), COALESCE(country, ''),
COALESCE(language, ''), COALESCE(gender, 0) FROM user WHERE openId = ?`,
	},
	oneWriter: true,
}

var postgresDialect = dialect{
	name:        "pgx",
	howToCreate: "create it with mpauthx.PostgresSchema, or open the database with mpauthx.OpenPostgres, which does",
	check:       `SELECT "openId", "city", "country", "gender", "language", "nickName", "province" FROM "user" WHERE false`,
	// The indexes are those of the table "user" names, resolved through
	// search_path as every query resolves it (not only current_schema()).
	migrated: `SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = '"user"'::regclass AND c.relname IN ('user_wxOpenId', 'user_unionId')
AND NOT EXISTS (SELECT "wxOpenId", "unionId", "phone" FROM "user" WHERE false)`,
	migrate: []string{
		`SELECT pg_advisory_xact_lock(` + postgresSchemaLockSQL + `)`,
		`ALTER TABLE "user" ADD COLUMN IF NOT EXISTS "wxOpenId" text,
ADD COLUMN IF NOT EXISTS "unionId" text, ADD COLUMN IF NOT EXISTS "phone" text`,
		`CREATE UNIQUE INDEX IF NOT EXISTS "user_wxOpenId" ON "user"("wxOpenId")`,
		`CREATE UNIQUE INDEX IF NOT EXISTS "user_unionId" ON "user"("unionId")`,
	},
	q: [numQueries]string{
		qExists: `SELECT 1 FROM "user" WHERE "openId" = $1`,
		qFind: `SELECT "openId", "wxOpenId" IS NULL, "unionId" IS NULL FROM (
  SELECT 0 AS r, "openId", "wxOpenId", "unionId" FROM "user" WHERE "wxOpenId" = $1
  UNION ALL SELECT 1, "openId", "wxOpenId", "unionId" FROM "user" WHERE "unionId" = $2
  UNION ALL SELECT 2, "openId", "wxOpenId", "unionId" FROM "user" WHERE "openId" = $2
  UNION ALL SELECT 3, "openId", "wxOpenId", "unionId" FROM "user" WHERE "openId" = $1
) AS found ORDER BY r LIMIT 1`,
		qInsert: `INSERT INTO "user"("openId", "wxOpenId", "unionId") VALUES($1, $2, NULLIF($3, '')) ON CONFLICT DO NOTHING`,
		qLink: `UPDATE "user" SET
"wxOpenId" = CASE WHEN "wxOpenId" IS NULL AND NOT EXISTS (SELECT 1 FROM "user" WHERE "wxOpenId" = $2) THEN $2 ELSE "wxOpenId" END,
"unionId" = CASE WHEN "unionId" IS NULL AND $3 <> '' AND NOT EXISTS (SELECT 1 FROM "user" WHERE "unionId" = $3) THEN $3 ELSE "unionId" END
WHERE "openId" = $1`,
		qUpsert: `INSERT INTO "user"("openId", "city", "country", "gender", "language", "nickName", "province")
VALUES($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT ("openId") DO UPDATE SET "city" = EXCLUDED."city", "country" = EXCLUDED."country",
"gender" = EXCLUDED."gender", "language" = EXCLUDED."language", "nickName" = EXCLUDED."nickName",
"province" = EXCLUDED."province"`,
		qPhone: `UPDATE "user" SET "phone" = $1 WHERE "openId" = $2`,
		qUser: `SELECT "openId", COALESCE("wxOpenId", ''), COALESCE("unionId", ''), COALESCE("phone", ''),
COALESCE("nickName", ''), COALESCE("city", ''), COALESCE("province", ''), COALESCE("country", ''),
COALESCE("language", ''), COALESCE("gender", 0) FROM "user" WHERE "openId" = $1`,
	},
}

// store is the SQL user table.
type store struct {
	db *sql.DB
	d  dialect
	// The dialect's statements, prepared when d.oneWriter (nil otherwise).
	stmts [numQueries]*sql.Stmt
	batch *upsertBatcher // nil unless d.oneWriter
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
// exists and migrating it (see migrate).
func newStore(ctx context.Context, db *sql.DB) (*store, error) {
	d, err := dialectFor(db.Driver())
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, d.check); err != nil {
		return nil, fmt.Errorf("mpauthx: Config.DB has no usable user table (%w); %s", err, d.howToCreate)
	}
	s := &store{db: db, d: d}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if d.oneWriter {
		for q := range numQueries {
			if s.stmts[q], err = db.PrepareContext(ctx, d.q[q]); err != nil {
				s.close()
				return nil, fmt.Errorf("mpauthx: preparing the user table's statements: %w", err)
			}
		}
		s.batch = newUpsertBatcher(db)
	}
	return s, nil
}

// migrate adds to a user table of the Node.js original (or of an older
// mpauthx) the columns and indexes of Schema, keeping every row. A table
// that has them costs one read and needs no write privilege. Instances
// starting at once are safe: on PostgreSQL the changes run in one
// transaction under an advisory lock; on SQLite, which takes one writer at
// a time, a column another instance added first is no error.
func (s *store) migrate(ctx context.Context) error {
	if s.isMigrated(ctx) {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("mpauthx: adding the columns %s and the indexes of mpauthx.Schema to the user table failed (%w); run them as the table's owner: %s",
			strings.Join(addedColumns, ", "), err, strings.Join(s.d.migrate, "; "))
	}
	if !s.d.oneWriter {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fail(err)
		}
		defer tx.Rollback() // a no-op after Commit
		for _, stmt := range s.d.migrate {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fail(err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fail(err)
		}
	} else {
		for _, stmt := range s.d.migrate {
			_, err := s.db.ExecContext(ctx, stmt)
			if err != nil && !strings.Contains(err.Error(), "duplicate column name") {
				return fail(err)
			}
		}
	}
	if !s.isMigrated(ctx) {
		return fail(errors.New("the columns or indexes are still missing"))
	}
	return nil
}

// isMigrated reports whether the user table has Schema's added columns
// and indexes.
func (s *store) isMigrated(ctx context.Context) bool {
	var n int
	err := s.db.QueryRowContext(ctx, s.d.migrated).Scan(&n)
	return err == nil && n == migratedIndexes
}

// close stops the batcher and releases the prepared statements, if any.
func (s *store) close() error {
	if s.batch != nil {
		s.batch.close()
	}
	var errs []error
	for _, st := range s.stmts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// queryRow runs the query q returning one row: its prepared statement,
// if any, else q on the pool.
func (s *store) queryRow(ctx context.Context, q query, args ...any) *sql.Row {
	if st := s.stmts[q]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, s.d.q[q], args...)
}

// exec runs the statement q: prepared, if it is, else on the pool.
func (s *store) exec(ctx context.Context, q query, args ...any) (sql.Result, error) {
	if st := s.stmts[q]; st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, s.d.q[q], args...)
}

// exists reports whether userID has a row.
func (s *store) exists(ctx context.Context, userID string) (bool, error) {
	var one int
	err := s.queryRow(ctx, qExists, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// login returns the user ID of the person with identity id (see resolve),
// adding their row if missing, and stores what the login
// brought: profile (Authorize's, nil for none) and phone ("" for none). On
// SQLite it all runs in the next group-committed batch (upsertBatcher), so
// that concurrent logins share one transaction; on PostgreSQL its
// statements run on the pool.
func (s *store) login(ctx context.Context, ident Identity, profile *UserInfo, phone string) (string, error) {
	var userID string
	work := func(ctx context.Context, o on) error {
		id, err := o.resolve(ctx, ident.OpenID, ident.UnionID)
		if err != nil {
			return err
		}
		if profile != nil {
			if _, err := o.exec(ctx, qUpsert, profileArgs(id, profile)...); err != nil {
				return err
			}
		}
		if phone != "" {
			if _, err := o.exec(ctx, qPhone, phone, id); err != nil {
				return err
			}
		}
		userID = id
		return nil
	}
	var err error
	if s.batch != nil {
		err = s.batch.do(ctx, func(ctx context.Context, tx *sql.Tx) error { return work(ctx, on{s: s, tx: tx}) })
	} else {
		err = work(ctx, on{s: s})
	}
	if err != nil {
		return "", err // userID may still be written by a batch the caller left
	}
	return userID, nil
}

// on is where a store's statements run: the pool, or a batch's
// transaction when tx is not nil.
type on struct {
	s  *store
	tx *sql.Tx
}

// queryRow runs the query q returning one row.
func (o on) queryRow(ctx context.Context, q query, args ...any) *sql.Row {
	if o.tx == nil {
		return o.s.queryRow(ctx, q, args...)
	}
	if st := o.s.stmts[q]; st != nil {
		return o.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return o.tx.QueryRowContext(ctx, o.s.d.q[q], args...)
}

// exec runs the statement q.
func (o on) exec(ctx context.Context, q query, args ...any) (sql.Result, error) {
	if o.tx == nil {
		return o.s.exec(ctx, q, args...)
	}
	if st := o.s.stmts[q]; st != nil {
		return o.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return o.tx.ExecContext(ctx, o.s.d.q[q], args...)
}

// errNoUserRow fails a resolve whose row could be neither found nor
// created, which the unique openId, wxOpenId and unionId columns rule out
// unless rows are being deleted at the same time.
var errNoUserRow = errors.New("mpauthx: the user row could not be created")

// resolve returns the user ID of the WeChat user with openID (and unionID,
// "" when unknown), adding a row for a new user: one WeChat user has one
// user ID whichever flow they log in with, and it never changes once the
// row exists. The row found is, in this order: the one that records
// openID; the one that records unionID; the one whose user ID is unionID;
// the one whose user ID is openID (rows of the Node.js original and of an
// older mpauthx record neither). A new row's user ID is unionID, else
// openID. openID and unionID are recorded on the row where missing. A
// returning user whose row records both costs one read.
func (o on) resolve(ctx context.Context, openID, unionID string) (string, error) {
	for range 2 {
		id, lacksOpenID, lacksUnionID, found, err := o.find(ctx, openID, unionID)
		if err != nil {
			return "", err
		}
		if !found {
			newID := openID
			if unionID != "" {
				newID = unionID
			}
			// Any conflict (a row created at the same moment, by this
			// flow or another) leaves the row to be found next time round.
			if _, err := o.exec(ctx, qInsert, newID, openID, unionID); err != nil {
				return "", err
			}
			continue
		}
		if lacksOpenID || (lacksUnionID && unionID != "") {
			if _, err := o.exec(ctx, qLink, id, openID, unionID); err != nil {
				return "", err
			}
		}
		return id, nil
	}
	return "", errNoUserRow
}

// find returns the row resolve picks for openID and unionID, and whether
// it lacks either.
func (o on) find(ctx context.Context, openID, unionID string) (id string, lacksOpenID, lacksUnionID, found bool, err error) {
	err = o.queryRow(ctx, qFind, openID, unionID).Scan(&id, &lacksOpenID, &lacksUnionID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, false, false, nil
	}
	return id, lacksOpenID, lacksUnionID, err == nil, err
}

// profileArgs are the arguments of qUpsert for userID's profile u,
// normalised (see normalizeProfile).
func profileArgs(userID string, u *UserInfo) []any {
	p := normalizeProfile(u)
	return []any{userID, p.city, p.country, p.gender, p.language, p.nickName, p.province}
}

// user returns userID's row, found false when there is none.
func (s *store) user(ctx context.Context, userID string) (u User, found bool, err error) {
	err = s.queryRow(ctx, qUser, userID).Scan(&u.ID, &u.OpenID, &u.UnionID, &u.Phone,
		&u.NickName, &u.City, &u.Province, &u.Country, &u.Language, &u.Gender)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, err
	}
	return u, true, nil
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
	// A table of the Node.js original is left for New to migrate: Schema's
	// indexes need the columns New adds.
	if _, err := db.ExecContext(ctx, sqliteDialect.check); err == nil {
		return db, nil
	}
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("mpauthx: OpenSQLite %s: %w", path, err)
	}
	return db, nil
}
