package mpauthx_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// envPostgresDSN names the PostgreSQL database the PostgreSQL tests use, as
// a pgx connection string (.ci/run sets it). Its role must be allowed to
// create schemas: each test works in a schema of its own, dropped at the end.
const envPostgresDSN = "MPAUTHX_POSTGRES_DSN"

// postgresDSN returns the DSN of envPostgresDSN, or skips the test when it
// is unset.
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envPostgresDSN)
	if dsn == "" {
		t.Skipf("set %s to a PostgreSQL database (e.g. postgres://postgres@127.0.0.1:5432/mpauthx?sslmode=disable) to run this test; .ci/run does", envPostgresDSN)
	}
	return dsn
}

// withParam returns dsn, a URL or key=value connection string, with the
// run-time parameter name set to value.
func withParam(t testing.TB, dsn, name, value string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a URL: %v", envPostgresDSN, err)
		}
		q := u.Query()
		q.Set(name, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + name + "=" + value
}

// freshSchema creates an empty schema in the database of envPostgresDSN,
// dropped with everything in it when the test ends, and returns a DSN whose
// search_path is that schema alone, so that the test sees only its own
// user table. It skips the test when envPostgresDSN is unset.
func freshSchema(t testing.TB) string {
	t.Helper()
	base := postgresDSN(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	schema := "mpauthx_test_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
		admin.Close()
		t.Fatalf("creating schema %s: %v", schema, err)
	}
	markUsed(t, "postgres")
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec(`DROP SCHEMA "` + schema + `" CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return withParam(t, base, "search_path", schema)
}

// openPostgres opens a fresh schema with OpenPostgres; the pool is closed
// when the test ends.
func openPostgres(t testing.TB) *sql.DB {
	t.Helper()
	db, err := mpauthx.OpenPostgres(freshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// forEachRedisOnPostgres is forEachRedis with the user table in a fresh
// PostgreSQL schema (e.db and e.cfg.DB) instead of SQLite.
func forEachRedisOnPostgres(t *testing.T, tweak func(*mpauthx.Config), f func(t *testing.T, e *env)) {
	t.Helper()
	postgresDSN(t)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := openPostgres(t)
			e := newEnv(t, b, func(c *mpauthx.Config) {
				c.DB = db
				if tweak != nil {
					tweak(c)
				}
			})
			e.db = db
			f(t, e)
		})
	}
}

// pgNames matches the identifiers of the user table that PostgreSQL needs
// quoted.
var pgNames = regexp.MustCompile(`\b(user|openId|nickName)\b`)

// pgQuery translates a test query written for SQLite (? placeholders, bare
// user, openId and nickName) into PostgreSQL's dialect.
func pgQuery(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return pgNames.ReplaceAllString(b.String(), `"$1"`)
}

// queryRow runs q, a query written for SQLite, on e.db, translated with
// pgQuery when e.db is a PostgreSQL database, so that one test body checks
// the user table of either.
func (e *env) queryRow(q string, args ...any) *sql.Row {
	if _, pg := e.db.Driver().(*stdlib.Driver); pg {
		q = pgQuery(q)
	}
	return e.db.QueryRow(q, args...)
}

// pgProfile is a user row as PostgreSQL holds it.
type pgProfile struct {
	nick, city, country, province, language sql.NullString
	gender                                  sql.NullInt64
}

// pgRow reads userID's row from the PostgreSQL user table; ok is false when
// there is none.
func (e *env) pgRow(t *testing.T, userID string) (p pgProfile, ok bool) {
	t.Helper()
	err := e.queryRow(`SELECT nickName, city, country, province, language, gender FROM user WHERE openId = ?`, userID).
		Scan(&p.nick, &p.city, &p.country, &p.province, &p.language, &p.gender)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return p, true
}

// TestOpenPostgresErrors checks that no error of OpenPostgres shows the
// dsn's password, in whole or in part, whatever the dsn's form: one that
// does not parse is not quoted at all (pgx's own masking misses a
// key=value password with an escaped space and an unterminated quote), and
// one that cannot connect names its host but not its password. The cases
// against a running server need MPAUTHX_POSTGRES_DSN.
func TestOpenPostgresErrors(t *testing.T) {
	const (
		secret = "hunter2-pg-password"
		kvPass = `'hunter2\ pg\ secret'` // key=value, escaped spaces: hunter2 pg secret
	)
	parts := []string{secret, "hunter2", "pg secret", `pg\ secret`, "pg%20secret", "secret"}
	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{"empty", "", "empty dsn"},
		{"bad URL port", "postgres://app:" + secret + "@127.0.0.1:notaport/db", "cannot parse the dsn"},
		{"bad key=value", "host=127.0.0.1 password=" + secret + " port=notaport", "cannot parse the dsn"},
		{"key=value escaped spaces, bad port", "host=127.0.0.1 port=notaport password=" + kvPass + " user=app", "cannot parse the dsn"},
		{"key=value escaped spaces, unterminated", "host=127.0.0.1 password=" + kvPass[:len(kvPass)-1], "cannot parse the dsn"},
		{"key=value unquoted escaped spaces", `host=127.0.0.1 port=x password=hunter2\ pg\ secret`, "cannot parse the dsn"},
		{"key=value bad sslmode", "host=127.0.0.1 password=" + kvPass + " sslmode=bogus", "cannot parse the dsn"},
		{"URL with spaces in the password", "postgres://app:hunter2 pg secret@127.0.0.1:1/db", "cannot parse the dsn"},
		{"URL with a bad escape", "postgres://app:hunter2%zzpg%20secret@127.0.0.1:1/db", "cannot parse the dsn"},
		{"nobody listening", "postgres://app:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", "127.0.0.1:1"},
		{"nobody listening, key=value", "host=127.0.0.1 port=1 user=app password=" + kvPass + " sslmode=disable connect_timeout=5", "127.0.0.1:1"},
		{"nobody listening, URL escaped spaces", "postgres://app:hunter2%20pg%20secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", "127.0.0.1:1"},
	}
	if dsn := os.Getenv(envPostgresDSN); dsn != "" {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		host, port := cfg.Host, strconv.Itoa(int(cfg.Port))
		tests = append(tests,
			struct{ name, dsn, want string }{"unknown role", "host=" + host + " port=" + port + " user=nobody_role password=" + kvPass + " dbname=" + cfg.Database + " sslmode=disable", "nobody_role"},
			struct{ name, dsn, want string }{"unknown database", "postgres://" + cfg.User + ":hunter2%20pg%20secret@" + host + ":" + port + "/no_such_db?sslmode=disable", "no_such_db"},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := mpauthx.OpenPostgres(tt.dsn)
			if err == nil {
				db.Close()
				t.Fatal("OpenPostgres succeeded")
			}
			text := fmt.Sprintf("%v %+v", err, err)
			if !strings.Contains(text, tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			for _, p := range parts {
				if strings.Contains(text, p) {
					t.Fatalf("error %q shows %q of the password", err, p)
				}
			}
		})
	}
}

// TestNewDetectsDialect checks, without a server, that New recognises pgx
// and names both supported drivers for any other.
func TestNewDetectsDialect(t *testing.T) {
	pg, err := sql.Open("pgx", "postgres://app@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	tests := []struct {
		name string
		db   *sql.DB
		want []string
	}{
		{"pgx without a server", pg, []string{"mpauthx.PostgresSchema", "OpenPostgres"}},
		{"unsupported driver", sql.OpenDB(fakeConnector{}), []string{"sqlite3", "pgx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := mpauthx.New(mpauthx.Config{AppID: "wx", AppSecret: "s", Sku: "sku", DB: tt.db, RedisAddr: "127.0.0.1:1"})
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestPGQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT count(*) FROM user`, `SELECT count(*) FROM "user"`},
		{`SELECT nickName, city FROM user WHERE openId = ?`, `SELECT "nickName", city FROM "user" WHERE "openId" = $1`},
		{`SELECT 1 FROM user WHERE openId = ? AND city = ?`, `SELECT 1 FROM "user" WHERE "openId" = $1 AND city = $2`},
		{`SELECT username FROM users`, `SELECT username FROM users`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := pgQuery(tt.in); got != tt.want {
				t.Fatalf("pgQuery = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPostgresSchemaMatchesSQLite(t *testing.T) {
	for _, col := range []string{"openId", "city", "country", "gender", "language", "nickName", "province"} {
		if !strings.Contains(mpauthx.Schema, col) || !strings.Contains(mpauthx.PostgresSchema, `"`+col+`"`) {
			t.Errorf("column %s is not in both schemas (quoted in PostgresSchema)", col)
		}
	}
	if !strings.Contains(mpauthx.PostgresSchema, `"user"`) {
		t.Error(`PostgresSchema does not quote "user"`)
	}
}

// TestOpenPostgresConcurrently starts instances at once on an empty schema:
// unguarded, concurrent CREATE TABLE IF NOT EXISTS fails with a unique
// violation in pg_type.
func TestOpenPostgresConcurrently(t *testing.T) {
	dsn := freshSchema(t)
	const n = 8
	start := make(chan struct{})
	errs := make([]error, n)
	dbs := make([]*sql.DB, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = mpauthx.OpenPostgres(dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return
	}
	var tables int
	if err := dbs[0].QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'user'`).Scan(&tables); err != nil || tables != 1 {
		t.Fatalf("%d user tables, %v", tables, err)
	}
	for i, db := range dbs {
		c, err := mpauthx.New(mpauthx.Config{AppID: "wx", AppSecret: "s", Sku: "sku", DB: db, RedisAddr: "127.0.0.1:1"})
		if err != nil {
			t.Fatalf("New on instance %d: %v", i, err)
		}
		c.Close()
	}
}

func TestOpenPostgresExistingTable(t *testing.T) {
	tests := []struct {
		name    string
		prepare string // run in the fresh schema first; "" for nothing
		want    string // "" for success, else part of OpenPostgres's error
	}{
		// A role that may not create tables can still open a database
		// whose table exists.
		{"read-only role, table exists", mpauthx.PostgresSchema, ""},
		{"read-only role, no table", "", "mpauthx.PostgresSchema"},
		{"table without the profile columns", `CREATE TABLE "user"("openId" text PRIMARY KEY)`, "lacks the columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := freshSchema(t)
			if tt.prepare != "" {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(tt.prepare); err != nil {
					t.Fatal(err)
				}
			}
			if strings.HasPrefix(tt.name, "read-only") {
				dsn = withParam(t, dsn, "default_transaction_read_only", "on")
			}
			db, err := mpauthx.OpenPostgres(dsn)
			if err == nil {
				defer db.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("OpenPostgres: %v", err)
			case tt.want != "" && err == nil:
				t.Fatal("OpenPostgres succeeded")
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestPostgresNewWithoutTable checks that New accepts any pgx *sql.DB, and
// refuses one without the table, saying how to create it.
func TestPostgresNewWithoutTable(t *testing.T) {
	db, err := sql.Open("pgx", freshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := mpauthx.Config{AppID: "wx", AppSecret: "s", Sku: "sku", DB: db, RedisAddr: "127.0.0.1:1"}
	if c, err := mpauthx.New(cfg); err == nil {
		c.Close()
		t.Fatal("New accepted a database without the user table")
	} else if !strings.Contains(err.Error(), "mpauthx.PostgresSchema") || !strings.Contains(err.Error(), "OpenPostgres") {
		t.Fatalf("error %q does not say how to create the table", err)
	}
	if _, err := db.Exec(mpauthx.PostgresSchema); err != nil {
		t.Fatal(err)
	}
	c, err := mpauthx.New(cfg)
	if err != nil {
		t.Fatalf("New after PostgresSchema: %v", err)
	}
	c.Close()
}

func TestPostgresAuthorize(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		u := e.user("ann")
		token := e.login(t, u)
		if e.c.ExtractOpenID(token) != u.OpenID || !e.valid(t, token) {
			t.Fatalf("token %q is not a live token of %s", token, u.OpenID)
		}
		p, ok := e.pgRow(t, u.OpenID)
		want := pgProfile{
			nick: sql.NullString{String: "ann", Valid: true}, city: sql.NullString{String: "Guangzhou", Valid: true},
			country: sql.NullString{String: "CN", Valid: true}, province: sql.NullString{String: "Guangdong", Valid: true},
			language: sql.NullString{String: "zh_CN", Valid: true}, gender: sql.NullInt64{Int64: 1, Valid: true},
		}
		if !ok || p != want {
			t.Fatalf("row = %+v (found %v), want %+v", p, ok, want)
		}
		if again := e.login(t, u); again != token {
			t.Fatal("second login got a new token")
		}
		if n := e.userRows(t); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
	})
}

func TestPostgresProfileUpsert(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		u := e.user("bea")
		e.login(t, u)
		u.NickName, u.City, u.Gender = "bea2", "Shenzhen", 2
		e.wx.AddUser(u)
		e.login(t, u)
		p, ok := e.pgRow(t, u.OpenID)
		if !ok || p.nick.String != "bea2" || p.city.String != "Shenzhen" || p.gender.Int64 != 2 || p.country.String != "CN" {
			t.Fatalf("row after the second Authorize = %+v (found %v)", p, ok)
		}
		if n := e.userRows(t); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
	})
}

func TestPostgresAuthorizeCodeKeepsProfile(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		fresh := e.user("ivy")
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(fresh.OpenID))
		if err != nil || !e.valid(t, res.Response) {
			t.Fatalf("AuthorizeCode = %+v, %v", res, err)
		}
		if p, ok := e.pgRow(t, fresh.OpenID); !ok || p != (pgProfile{}) {
			t.Fatalf("new row = %+v (found %v), want a row without profile", p, ok)
		}
		known := e.user("jay")
		e.login(t, known)
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(known.OpenID)); err != nil {
			t.Fatal(err)
		}
		if p, ok := e.pgRow(t, known.OpenID); !ok || p.nick.String != "jay" || p.city.String != "Guangzhou" {
			t.Fatalf("profile after AuthorizeCode = %+v (row found: %v)", p, ok)
		}
	})
}

func TestPostgresRefreshToken(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		u := e.user("kim")
		old := e.login(t, u)
		res, err := e.c.RefreshToken(bg, u.OpenID)
		if err != nil || res.Response == old {
			t.Fatalf("RefreshToken = %+v, %v", res, err)
		}
		if e.valid(t, old) || !e.valid(t, res.Response) {
			t.Fatal("after refresh the old token must be invalid and the new one valid")
		}
		_, err = e.c.RefreshToken(bg, "o-nobody")
		wantCode(t, err, mpauthx.StatusUserNotExist)
	})
}

func TestPostgresSQLLiterals(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		ids := []string{`o'quote`, `o%percent`, `o_under`, `o"; DROP TABLE "user"; --`, `o\back`, `o$1`, `中文openid`}
		for _, id := range ids {
			token := e.login(t, e.wx.AddUser(mpauthxtest.User{OpenID: id, NickName: id}))
			if e.c.ExtractOpenID(token) != id || !e.valid(t, token) {
				t.Fatalf("%q: token %q", id, token)
			}
			if p, ok := e.pgRow(t, id); !ok || p.nick.String != id {
				t.Fatalf("%q stored as %+v (found %v)", id, p, ok)
			}
			if _, err := e.c.RefreshToken(bg, id); err != nil {
				t.Fatalf("RefreshToken(%q): %v", id, err)
			}
		}
		for _, pattern := range []string{"o%", "o_nder", "o_", "%", "_%", "O'QUOTE", "o$2"} {
			_, err := e.c.RefreshToken(bg, pattern)
			wantCode(t, err, mpauthx.StatusUserNotExist)
		}
		if n := e.userRows(t); n != len(ids) {
			t.Fatalf("%d rows, want %d", n, len(ids))
		}
	})
}

func TestPostgresDown(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		u := e.user("quinn")
		e.db.Close()
		_, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		wantCode(t, err, mpauthx.StatusDatabaseError)
		data, iv := e.wx.UserInfo(u.OpenID)
		_, err = e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		wantCode(t, err, mpauthx.StatusDatabaseError)
		_, err = e.c.RefreshToken(bg, u.OpenID)
		wantCode(t, err, mpauthx.StatusDatabaseError)
	})
}

func TestPostgresCancelledContext(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(bg)
		cancel()
		_, err := e.c.RefreshToken(ctx, "o-anyone")
		wantCode(t, err, mpauthx.StatusDatabaseError)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v does not wrap context.Canceled", err)
		}
	})
}

// cloneRedis returns a new client, with its own connections, to the Redis
// that rdb talks to.
func cloneRedis(t *testing.T, rdb redis.UniversalClient) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	switch r := rdb.(type) {
	case *redis.Client:
		o := r.Options()
		c = redis.NewClient(&redis.Options{Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB})
	case *redis.ClusterClient:
		o := r.Options()
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password})
	default:
		t.Fatalf("cannot clone a %T", rdb)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPostgresTwoInstances runs two Clients as two backend instances would:
// each with its own PostgreSQL pool and Redis connections, sharing the
// database, the Redis and the Sku. Concurrent logins of one user through
// both end with one row and one live token that every caller gets.
func TestPostgresTwoInstances(t *testing.T) {
	forEachRedisOnPostgres(t, nil, func(t *testing.T, e *env) {
		dsn := freshSchema(t)
		db1, err := mpauthx.OpenPostgres(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db1.Close()
		db2, err := mpauthx.OpenPostgres(dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db2.Close()
		var clients [2]*mpauthx.Client
		for i, db := range []*sql.DB{db1, db2} {
			cfg := e.cfg
			cfg.DB = db
			cfg.Redis = cloneRedis(t, e.rdb)
			if clients[i], err = mpauthx.New(cfg); err != nil {
				t.Fatal(err)
			}
			defer clients[i].Close()
		}
		u := e.user("ned")
		const n = 32
		codes := make([]string, n)
		for i := range codes {
			codes[i] = e.wx.Code(u.OpenID)
		}
		tokens := make([]string, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				c := clients[i%2]
				var res mpauthx.Result
				if i%4 < 2 {
					data, iv := e.wx.UserInfo(u.OpenID)
					res, errs[i] = c.Authorize(bg, codes[i], data, iv)
				} else {
					res, errs[i] = c.AuthorizeCode(bg, codes[i])
				}
				tokens[i] = res.Response
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("login %d on instance %d: %v", i, i%2, err)
			}
			if tokens[i] != tokens[0] {
				t.Fatalf("login %d on instance %d got another token", i, i%2)
			}
		}
		var rows int
		if err := db1.QueryRow(`SELECT count(*) FROM "user" WHERE "openId" = $1`, u.OpenID).Scan(&rows); err != nil || rows != 1 {
			t.Fatalf("%d rows for the user, %v", rows, err)
		}
		var nick sql.NullString
		if err := db2.QueryRow(`SELECT "nickName" FROM "user" WHERE "openId" = $1`, u.OpenID).Scan(&nick); err != nil || nick.String != "ned" {
			t.Fatalf("profile nickName = %v, %v", nick, err)
		}
		sess := tokens[0][strings.LastIndexByte(tokens[0], '|')+1:]
		if got, err := e.rdb.Get(bg, e.key(u.OpenID)).Result(); err != nil || got != sess {
			t.Fatalf("Redis holds %q, %v; want the shared token's session", got, err)
		}
		for i, c := range clients {
			if ok, err := c.IsTokenValid(bg, tokens[0]); !ok || err != nil {
				t.Fatalf("instance %d: IsTokenValid = %v, %v", i, ok, err)
			}
		}
		// A refresh on one instance is seen at once by the other.
		res, err := clients[0].RefreshToken(bg, u.OpenID)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := clients[1].IsTokenValid(bg, tokens[0]); ok || err != nil {
			t.Fatalf("instance 1: IsTokenValid of the token instance 0 replaced = %v, %v; want false, nil", ok, err)
		}
		if ok, err := clients[1].IsTokenValid(bg, res.Response); !ok || err != nil {
			t.Fatalf("instance 1: IsTokenValid of the token instance 0 issued = %v, %v; want true, nil", ok, err)
		}
	})
}

// BenchmarkRefreshToken measures RefreshToken, one indexed SELECT and one
// Redis SET, from parallel goroutines on each SQL database (Redis is an
// in-process miniredis). Run it with
//
//	MPAUTHX_POSTGRES_DSN=... go test -run '^$' -bench RefreshToken -cpu 8
func BenchmarkRefreshToken(b *testing.B) {
	dbs := []struct {
		name string
		open func(b *testing.B) *sql.DB
	}{
		{"sqlite", func(b *testing.B) *sql.DB {
			db, err := mpauthx.OpenSQLite(filepath.Join(b.TempDir(), "u.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		}},
		{"postgres", func(b *testing.B) *sql.DB { return openPostgres(b) }},
	}
	for _, d := range dbs {
		b.Run(d.name, func(b *testing.B) {
			e := newWorld(b)
			e.mr = miniredis.RunT(b)
			e.rdb = redis.NewClient(&redis.Options{Addr: e.mr.Addr()})
			b.Cleanup(func() { e.rdb.Close() })
			e.cfg.Redis, e.cfg.DB = e.rdb, d.open(b)
			e.open(b)
			c := e.c
			u := e.wx.AddUser(mpauthxtest.User{OpenID: "o-bench"})
			if _, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.RefreshToken(bg, u.OpenID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestPostgresTableInLaterSchema opens the user table through a later
// entry of search_path, as a database whose tables live in a shared
// schema while each role's own schema comes first: New finds the table
// there, migrates it in place (PostgreSQL resolves "user" the same way
// every query does), and a login works. The migration's check once
// counted indexes in current_schema() only, so New always failed.
func TestPostgresTableInLaterSchema(t *testing.T) {
	tables := freshSchema(t) // where the table is: a later search_path entry
	first := freshSchema(t)  // current_schema(): empty
	schemaOf := func(dsn string) string {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("search_path")
	}
	for _, tt := range []struct{ name, create string }{
		{"today's table", mpauthx.PostgresSchema},
		{"the Node original's table", pgQuery(nodeSchema)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			admin, err := sql.Open("pgx", tables)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if _, err := admin.Exec(`DROP TABLE IF EXISTS "user" CASCADE; DROP TABLE IF EXISTS "user_identity" CASCADE`); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Exec(tt.create); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Exec(`INSERT INTO "user"("openId", "nickName") VALUES('o-kept', 'kept')`); err != nil {
				t.Fatal(err)
			}
			dsn := withParam(t, postgresDSN(t), "search_path", schemaOf(first)+","+schemaOf(tables))
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			e := newWorld(t)
			e.rdb, e.mr = backends()[0].open(t)
			e.cfg.Redis, e.cfg.DB, e.db = e.rdb, db, db
			c, err := mpauthx.New(e.cfg)
			if err != nil {
				t.Fatalf("New with the table in a later search_path schema: %v", err)
			}
			defer c.Close()
			e.c = c
			u := e.user("later")
			if tok := e.login(t, u); c.ExtractOpenID(tok) != u.OpenID {
				t.Fatalf("login got %q", tok)
			}
			if got, err := c.User(bg, "o-kept"); err != nil || got.NickName != "kept" {
				t.Fatalf("User(o-kept) = %+v, %v", got, err)
			}
			// Nothing was created in the first schema.
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1`, schemaOf(first)).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d relations in the first schema, %v; want none", n, err)
			}
		})
	}
}
