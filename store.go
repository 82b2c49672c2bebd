package mpauthx

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
)

// Schema creates the user table of the Node.js original, so that its
// databases keep working, with the columns, indexes and table mpauthx
// adds. The user table's openId column holds the user ID of a token; its
// wxOpenId and unionId columns are those of earlier versions, read (never
// written) to find their users; phone is the pure phone number of the
// last phone login, recorded only when a platform verified it. The
// user_identity table holds every app's identifier of each user (see
// Identity): the (platform, appId, openId) of each app the user logged in
// through, with its unionid in the platform family's namespace (family:
// "wechat" for WeChat's mini programs, official accounts and websites).
// New adds what is missing to a table of the original or of an earlier
// version in place, keeping every row; docs/identities.md has the rules.
const Schema = `CREATE TABLE IF NOT EXISTS user(
  openId text primary key not null,
  city text, country text, gender integer,
  language text, nickName text, province text,
  wxOpenId text, unionId text, phone text);
CREATE UNIQUE INDEX IF NOT EXISTS user_wxOpenId ON user(wxOpenId) WHERE wxOpenId IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS user_unionId ON user(unionId) WHERE unionId IS NOT NULL;
CREATE INDEX IF NOT EXISTS user_phone ON user(phone) WHERE phone IS NOT NULL;
` + sqliteIdentitySchema

// sqliteIdentitySchema creates the identity table and its indexes in
// SQLite.
const sqliteIdentitySchema = `CREATE TABLE IF NOT EXISTS user_identity(
  platform text NOT NULL, appId text NOT NULL, openId text NOT NULL,
  family text NOT NULL, unionId text, userId text NOT NULL,
  PRIMARY KEY(platform, appId, openId)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_identity_unionId ON user_identity(family, unionId) WHERE unionId IS NOT NULL;
CREATE INDEX IF NOT EXISTS user_identity_userId ON user_identity(userId)`

// PostgresSchema creates the tables of Schema in PostgreSQL: the same
// table, column and index names, quoted, because user is a reserved word
// there and PostgreSQL folds unquoted names to lower case ("openId" stays
// openId). OpenPostgres runs it; run it yourself (or your migration tool's
// equivalent) when the application's role may not create tables.
const PostgresSchema = `CREATE TABLE IF NOT EXISTS "user"(
  "openId" text PRIMARY KEY NOT NULL,
  "city" text, "country" text, "gender" integer,
  "language" text, "nickName" text, "province" text,
  "wxOpenId" text, "unionId" text, "phone" text);
CREATE UNIQUE INDEX IF NOT EXISTS "user_wxOpenId" ON "user"("wxOpenId") WHERE "wxOpenId" IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS "user_unionId" ON "user"("unionId") WHERE "unionId" IS NOT NULL;
CREATE INDEX IF NOT EXISTS "user_phone" ON "user"("phone") WHERE "phone" IS NOT NULL;
` + postgresIdentitySchema

// postgresIdentitySchema creates the identity table and its indexes in
// PostgreSQL.
const postgresIdentitySchema = `CREATE TABLE IF NOT EXISTS "user_identity"(
  "platform" text NOT NULL, "appId" text NOT NULL, "openId" text NOT NULL,
  "family" text NOT NULL, "unionId" text, "userId" text NOT NULL,
  PRIMARY KEY("platform", "appId", "openId"));
CREATE INDEX IF NOT EXISTS "user_identity_unionId" ON "user_identity"("family", "unionId") WHERE "unionId" IS NOT NULL;
CREATE INDEX IF NOT EXISTS "user_identity_userId" ON "user_identity"("userId")`

// dialect holds the SQL of one database engine. Every statement is
// parameterised and matches IDs exactly (never with LIKE).
type dialect struct {
	name        string
	howToCreate string // the end of New's error when the table is missing
	check       string // fails unless the table and the original's columns exist
	// migrated counts the indexes of Schema and fails unless its added
	// columns and the identity table exist; migrate adds what is missing
	// (see store.migrate).
	migrated string
	migrate  []string
	q        [numQueries]string
	// oneWriter marks SQLite, whose one connection every login waits for:
	// its statements are prepared once, in New (SQLite spends much of a
	// short statement compiling it), and the statements of concurrent
	// logins share one transaction (upsertBatcher), which also serialises
	// them. PostgreSQL writes in parallel on a pool, pgx caches prepared
	// statements by itself, and explicit ones would break behind a
	// transaction-pooling proxy such as PgBouncer; there, the logins that
	// record something new run in a transaction of their own under
	// advisory locks of their identifiers (see store.serialized).
	oneWriter bool
}

// query names a statement of a dialect.
type query int

const (
	qExists      query = iota // one row when the user ID exists
	qIdentity                 // the user and unionid of an identity (platform, appId, openId): one index lookup
	qByUnionID                // the users of the identities holding a unionid in a family
	qLegacy                   // the user an earlier version's columns give an openid and unionid (see on.gather)
	qByPhone                  // up to two users holding a phone number
	qInsertUser               // adds a user row with its profile and phone; no-op on any conflict
	qAddIdentity              // records an identity of a user; no-op on any conflict
	qSetUnionID               // records an identity's unionid
	qUpsert                   // adds or updates a user row with its profile
	qPhone                    // records the phone number
	qUser                     // reads a row back
	qIdentities               // reads a user's identities
	numQueries
)

// migratedIndexes is how many of Schema's indexes dialect.migrated must
// count.
const migratedIndexes = 5

// addedColumns are the columns mpauthx adds to the original's table.
var addedColumns = []string{"wxOpenId", "unionId", "phone"}

var sqliteDialect = dialect{
	name:        "sqlite3",
	howToCreate: "create it with mpauthx.Schema, or open the database with mpauthx.OpenSQLite, which does",
	check:       `SELECT openId, city, country, gender, language, nickName, province FROM user WHERE 0`,
	migrated: `SELECT count(*) FROM sqlite_master WHERE type = 'index'
AND name IN ('user_wxOpenId', 'user_unionId', 'user_phone', 'user_identity_unionId', 'user_identity_userId')
AND (SELECT count(*) FROM (SELECT wxOpenId, unionId, phone FROM user WHERE 0)) = 0
AND (SELECT count(*) FROM (SELECT platform, appId, openId, family, unionId, userId FROM user_identity WHERE 0)) = 0`,
	migrate: append([]string{
		`ALTER TABLE user ADD COLUMN wxOpenId text`,
		`ALTER TABLE user ADD COLUMN unionId text`,
		`ALTER TABLE user ADD COLUMN phone text`,
		`CREATE UNIQUE INDEX IF NOT EXISTS user_wxOpenId ON user(wxOpenId) WHERE wxOpenId IS NOT NULL`,
		`CREATE UNIQUE INDEX IF NOT EXISTS user_unionId ON user(unionId) WHERE unionId IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS user_phone ON user(phone) WHERE phone IS NOT NULL`,
	}, strings.Split(sqliteIdentitySchema, ";\n")...),
	q: [numQueries]string{
		qExists:    `SELECT 1 FROM user WHERE openId = ?`,
		qIdentity:  `SELECT userId, COALESCE(unionId, '') FROM user_identity WHERE platform = ? AND appId = ? AND openId = ?`,
		qByUnionID: `SELECT userId FROM user_identity WHERE family = ? AND unionId = ?`,
		qLegacy: `SELECT COALESCE((SELECT openId FROM user WHERE wxOpenId = ?1), (SELECT openId FROM user WHERE unionId = ?2),
(SELECT openId FROM user WHERE openId = ?2), (SELECT openId FROM user WHERE openId = ?1))`,
		qByPhone: `SELECT openId FROM user WHERE phone = ? LIMIT 2`,
		qInsertUser: `INSERT INTO user(openId, city, country, gender, language, nickName, province, phone)
VALUES(?, ?, ?, ?, ?, ?, ?, NULLIF(?, '')) ON CONFLICT DO NOTHING`,
		qAddIdentity: `INSERT INTO user_identity(platform, appId, openId, family, unionId, userId)
VALUES(?, ?, ?, ?, NULLIF(?, ''), ?) ON CONFLICT DO NOTHING`,
		qSetUnionID: `UPDATE user_identity SET unionId = ? WHERE platform = ? AND appId = ? AND openId = ?`,
		qUpsert: `INSERT INTO user(openId, city, country, gender, language, nickName, province)
VALUES(?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(openId) DO UPDATE SET city = excluded.city, country = excluded.country,
gender = excluded.gender, language = excluded.language, nickName = excluded.nickName,
province = excluded.province`,
		qPhone: `UPDATE user SET phone = ? WHERE openId = ?`,
		qUser: `SELECT openId, COALESCE(wxOpenId, ''), COALESCE(unionId, ''), COALESCE(phone, ''),
COALESCE(nickName, ''), COALESCE(city, ''), COALESCE(province, ''), COALESCE(country, ''),
COALESCE(language, ''), COALESCE(gender, 0) FROM user WHERE openId = ?`,
		qIdentities: `SELECT platform, appId, openId, COALESCE(unionId, '') FROM user_identity WHERE userId = ?`,
	},
	oneWriter: true,
}

var postgresDialect = dialect{
	name:        "pgx",
	howToCreate: "create it with mpauthx.PostgresSchema, or open the database with mpauthx.OpenPostgres, which does",
	check:       `SELECT "openId", "city", "country", "gender", "language", "nickName", "province" FROM "user" WHERE false`,
	// The indexes are those of the tables "user" and "user_identity"
	// name, resolved through search_path as every query resolves them
	// (not only in current_schema()).
	migrated: `SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN ('"user"'::regclass, '"user_identity"'::regclass)
AND c.relname IN ('user_wxOpenId', 'user_unionId', 'user_phone', 'user_identity_unionId', 'user_identity_userId')
AND NOT EXISTS (SELECT "wxOpenId", "unionId", "phone" FROM "user" WHERE false)
AND NOT EXISTS (SELECT "platform", "appId", "openId", "family", "unionId", "userId" FROM "user_identity" WHERE false)`,
	migrate: append([]string{
		`SELECT pg_advisory_xact_lock(` + postgresSchemaLockSQL + `)`,
		// What follows is created beside the user table, in the schema
		// where search_path finds it (for this transaction only).
		`SELECT set_config('search_path', (SELECT quote_ident(s.nspname) FROM pg_class c
JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.oid = '"user"'::regclass), true)`,
		`ALTER TABLE "user" ADD COLUMN IF NOT EXISTS "wxOpenId" text,
ADD COLUMN IF NOT EXISTS "unionId" text, ADD COLUMN IF NOT EXISTS "phone" text`,
		`CREATE UNIQUE INDEX IF NOT EXISTS "user_wxOpenId" ON "user"("wxOpenId") WHERE "wxOpenId" IS NOT NULL`,
		`CREATE UNIQUE INDEX IF NOT EXISTS "user_unionId" ON "user"("unionId") WHERE "unionId" IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS "user_phone" ON "user"("phone") WHERE "phone" IS NOT NULL`,
	}, strings.Split(postgresIdentitySchema, ";\n")...),
	q: [numQueries]string{
		qExists:    `SELECT 1 FROM "user" WHERE "openId" = $1`,
		qIdentity:  `SELECT "userId", COALESCE("unionId", '') FROM "user_identity" WHERE "platform" = $1 AND "appId" = $2 AND "openId" = $3`,
		qByUnionID: `SELECT "userId" FROM "user_identity" WHERE "family" = $1 AND "unionId" = $2`,
		qLegacy: `SELECT COALESCE((SELECT "openId" FROM "user" WHERE "wxOpenId" = $1), (SELECT "openId" FROM "user" WHERE "unionId" = $2),
(SELECT "openId" FROM "user" WHERE "openId" = $2), (SELECT "openId" FROM "user" WHERE "openId" = $1))`,
		qByPhone: `SELECT "openId" FROM "user" WHERE "phone" = $1 LIMIT 2`,
		qInsertUser: `INSERT INTO "user"("openId", "city", "country", "gender", "language", "nickName", "province", "phone")
VALUES($1, $2, $3, $4, $5, $6, $7, NULLIF($8, '')) ON CONFLICT DO NOTHING`,
		qAddIdentity: `INSERT INTO "user_identity"("platform", "appId", "openId", "family", "unionId", "userId")
VALUES($1, $2, $3, $4, NULLIF($5, ''), $6) ON CONFLICT DO NOTHING`,
		qSetUnionID: `UPDATE "user_identity" SET "unionId" = $1 WHERE "platform" = $2 AND "appId" = $3 AND "openId" = $4`,
		qUpsert: `INSERT INTO "user"("openId", "city", "country", "gender", "language", "nickName", "province")
VALUES($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT ("openId") DO UPDATE SET "city" = EXCLUDED."city", "country" = EXCLUDED."country",
"gender" = EXCLUDED."gender", "language" = EXCLUDED."language", "nickName" = EXCLUDED."nickName",
"province" = EXCLUDED."province"`,
		qPhone: `UPDATE "user" SET "phone" = $1 WHERE "openId" = $2`,
		qUser: `SELECT "openId", COALESCE("wxOpenId", ''), COALESCE("unionId", ''), COALESCE("phone", ''),
COALESCE("nickName", ''), COALESCE("city", ''), COALESCE("province", ''), COALESCE("country", ''),
COALESCE("language", ''), COALESCE("gender", 0) FROM "user" WHERE "openId" = $1`,
		qIdentities: `SELECT "platform", "appId", "openId", COALESCE("unionId", '') FROM "user_identity" WHERE "userId" = $1`,
	},
}

// store is the SQL user and identity tables.
type store struct {
	db *sql.DB
	d  dialect
	// The dialect's statements, prepared when d.oneWriter (nil otherwise).
	stmts [numQueries]*sql.Stmt
	batch *upsertBatcher // nil unless d.oneWriter
	// linkByPhone is Config.LinkByPhone: a phone login whose identifiers
	// match nobody finds the user holding the phone number.
	linkByPhone bool
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
// mpauthx) the columns, indexes and identity table of Schema, keeping
// every row: the rows of earlier versions are found through their columns
// and IDs (see on.gather) and gain their identities at their next login.
// A table that has them costs one read and needs no write privilege.
// Instances starting at once are safe: on PostgreSQL the changes run in
// one transaction under an advisory lock; on SQLite, which takes one
// writer at a time, a column another instance added first is no error.
func (s *store) migrate(ctx context.Context) error {
	if s.isMigrated(ctx) {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("mpauthx: adding the columns %s, the indexes and the user_identity table of mpauthx.Schema to the user table failed (%w); run them as the table's owner: %s",
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

// isMigrated reports whether the database has Schema's added columns,
// indexes and identity table.
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

// query runs the query q returning rows: its prepared statement, if any,
// else q on the pool.
func (s *store) query(ctx context.Context, q query, args ...any) (*sql.Rows, error) {
	if st := s.stmts[q]; st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, s.d.q[q], args...)
}

// on is where a store's statements run: the pool, or a transaction (a
// SQLite batch's, or a serialised PostgreSQL login's) when tx is not nil.
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

// query runs the query q returning rows.
func (o on) query(ctx context.Context, q query, args ...any) (*sql.Rows, error) {
	if o.tx == nil {
		return o.s.query(ctx, q, args...)
	}
	if st := o.s.stmts[q]; st != nil {
		return o.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return o.tx.QueryContext(ctx, o.s.d.q[q], args...)
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

// profileArgs are the arguments of qUpsert for userID's profile u,
// normalised (see normalizeProfile).
func profileArgs(userID string, u *UserInfo) []any {
	p := normalizeProfile(u)
	return []any{userID, p.city, p.country, p.gender, p.language, p.nickName, p.province}
}

// user returns userID's row with its identities, found false when there
// is none. OpenID and UnionID are those of the app (platform, appID)
// reading it: its identity's; else, for a WeChat mini program, the
// openid an earlier version recorded (wxOpenId, when no identity says it
// is another app's); the unionid of any identity of the platform's
// family, else the one an earlier version recorded, for WeChat.
func (s *store) user(ctx context.Context, userID string, platform Platform, appID string) (u User, found bool, err error) {
	err = s.queryRow(ctx, qUser, userID).Scan(&u.ID, &u.OpenID, &u.UnionID, &u.Phone,
		&u.NickName, &u.City, &u.Province, &u.Country, &u.Language, &u.Gender)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, err
	}
	rows, err := s.query(ctx, qIdentities, userID)
	if err != nil {
		return User{}, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var id Identity
		if err := rows.Scan(&id.Platform, &id.AppID, &id.OpenID, &id.UnionID); err != nil {
			return User{}, false, err
		}
		u.Identities = append(u.Identities, id)
	}
	if err := rows.Err(); err != nil {
		return User{}, false, err
	}
	// Sorted here, bytewise: a database's collation may order text
	// otherwise.
	slices.SortFunc(u.Identities, func(a, b Identity) int {
		return cmp.Or(cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.OpenID, b.OpenID))
	})
	platform = platform.normalize()
	legacyOpenID, legacyUnionID := u.OpenID, u.UnionID
	u.OpenID, u.UnionID = "", ""
	for _, id := range u.Identities {
		if id.Platform == platform && id.AppID == appID {
			u.OpenID, u.UnionID = id.OpenID, id.UnionID
		}
	}
	if u.OpenID == "" && platform == WeChatMiniProgram && !slices.ContainsFunc(u.Identities, func(id Identity) bool { return id.OpenID == legacyOpenID }) {
		u.OpenID = legacyOpenID
	}
	for _, id := range u.Identities {
		if u.UnionID == "" && id.Platform.family() == platform.family() {
			u.UnionID = id.UnionID
		}
	}
	if u.UnionID == "" && platform.family() == WeChatMiniProgram.family() {
		u.UnionID = legacyUnionID
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
// Several processes (or *sql.DB) may share the file. Transactions begin
// deferred, so that logins that only read never wait for another's write
// lock; a login batch whose write finds that another connection committed
// since it read runs again holding the write lock from the start, as
// BEGIN IMMEDIATE does, so it fails with "database is locked" (6000) only
// when the lock stays taken longer than the busy timeout. The same holds
// for a *sql.DB of your own passed as Config.DB.
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
