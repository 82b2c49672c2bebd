package mpauthx_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// nodeSchema is the user table of the Node.js original, as its databases
// hold it.
const nodeSchema = `CREATE TABLE IF NOT EXISTS user(
  openId text primary key not null,
  city text, country text, gender integer,
  language text, nickName text, province text)`

// flow logs u in one way and returns the token.
type flow struct {
	name  string
	login func(t *testing.T, e *env, u mpauthxtest.User) string
}

var flows = []flow{
	{"Authorize", func(t *testing.T, e *env, u mpauthxtest.User) string { return e.login(t, u) }},
	{"AuthorizeCode", func(t *testing.T, e *env, u mpauthxtest.User) string {
		t.Helper()
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatalf("AuthorizeCode: %v", err)
		}
		return res.Response
	}},
}

// TestOneUserOneID logs one WeChat user in with every order of the flows,
// with the unionid in code2session's reply, only in encryptedData, or
// nowhere: every login gets the same user ID (so the same token), the
// table holds one row, and User reads back the openid and unionid.
func TestOneUserOneID(t *testing.T) {
	type kind struct {
		name      string
		unionID   bool // the user has one
		omitInSes bool // code2session leaves it out
	}
	kinds := []kind{{"no unionid", false, false}, {"unionid in code2session", true, false}, {"unionid only in encryptedData", true, true}}
	orders := [][]flow{{flows[0], flows[1], flows[0]}, {flows[1], flows[0], flows[1]}}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for _, k := range kinds {
			for _, order := range orders {
				t.Run(k.name+"/"+order[0].name+" first", func(t *testing.T) {
					u := e.user("id")
					if k.unionID {
						u.UnionID = "u" + u.OpenID
						u.OmitUnionIDInSession = k.omitInSes
						u = e.wx.AddUser(u)
					}
					rowsBefore := e.userRows(t)
					var first string
					for i, f := range order {
						tok := f.login(t, e, u)
						if i == 0 {
							first = tok
						} else if tok != first {
							t.Fatalf("login %d (%s) got token of %q, want the first login's %q", i, f.name, e.c.ExtractOpenID(tok), e.c.ExtractOpenID(first))
						}
					}
					if !e.valid(t, first) {
						t.Fatal("the shared token is not valid")
					}
					if n := e.userRows(t) - rowsBefore; n != 1 {
						t.Fatalf("the logins added %d rows, want 1", n)
					}
					id := e.c.ExtractOpenID(first)
					got, err := e.c.User(bg, id)
					if err != nil {
						t.Fatalf("User: %v", err)
					}
					want := mpauthx.User{ID: id, OpenID: u.OpenID, UnionID: u.UnionID}
					if got.ID != want.ID || got.OpenID != want.OpenID || got.UnionID != want.UnionID {
						t.Fatalf("User = %+v, want ID, OpenID, UnionID of %+v", got, want)
					}
					// A new user's ID is the unionid when the first login
					// knew it, else the openid.
					knew := k.unionID && (!k.omitInSes || order[0].name == "Authorize")
					if wantID := map[bool]string{true: u.UnionID, false: u.OpenID}[knew]; id != wantID {
						t.Errorf("user ID = %q, want %q", id, wantID)
					}
				})
			}
		}
	})
}

// TestUser reads back a profile and checks User's errors.
func TestUser(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("reader")
		id := e.c.ExtractOpenID(e.login(t, u))
		got, err := e.c.User(bg, id)
		if err != nil {
			t.Fatal(err)
		}
		want := mpauthx.User{ID: id, OpenID: u.OpenID, NickName: u.NickName, City: u.City, Province: u.Province,
			Country: u.Country, Language: u.Language, Gender: u.Gender}
		got.Identities = nil // TestIdentities checks them
		if !reflect.DeepEqual(got, want) {
			t.Errorf("User = %+v, want %+v", got, want)
		}
		for _, tt := range []struct {
			id   string
			code mpauthx.StatusCode
		}{
			{"", mpauthx.StatusRequiredParamsMissing},
			{"a|b", mpauthx.StatusRequiredParamsMissing},
			{"o-nobody", mpauthx.StatusUserNotExist},
			{id[:len(id)-1] + "%", mpauthx.StatusUserNotExist}, // no LIKE
		} {
			if _, err := e.c.User(bg, tt.id); mpauthx.Code(err) != tt.code {
				t.Errorf("User(%q) = %v, want code %d", tt.id, err, tt.code)
			}
		}
	})
}

// TestConcurrentFirstLoginsOneRow logs a new user in with both flows at
// once, many times over: one row, and every login gets the same token.
func TestConcurrentFirstLoginsOneRow(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for round := range 5 {
			u := e.user(fmt.Sprint("race", round))
			u.UnionID = "u" + u.OpenID
			u.OmitUnionIDInSession = round%2 == 0
			u = e.wx.AddUser(u)
			rowsBefore := e.userRows(t)
			const n = 8
			tokens := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { tokens[i] = flows[i%2].login(t, e, u) })
			}
			wg.Wait()
			for i, tok := range tokens {
				if tok != tokens[0] {
					t.Fatalf("round %d: login %d got %q's token, login 0 %q's", round, i, e.c.ExtractOpenID(tok), e.c.ExtractOpenID(tokens[0]))
				}
			}
			if n := e.userRows(t) - rowsBefore; n != 1 {
				t.Fatalf("round %d: %d rows added, want 1", round, n)
			}
		}
	})
}

// legacyDB is a database holding a table of the Node.js original, with
// rows.
type legacyDB struct {
	name string
	open func(t *testing.T) (dsnOpen func() *sql.DB)
}

// legacyDBs returns an opener of a Node.js original's database for each
// SQL engine of this run.
func legacyDBs(t *testing.T) []legacyDB {
	dbs := []legacyDB{{"sqlite", func(t *testing.T) func() *sql.DB {
		path := filepath.Join(t.TempDir(), "node.db")
		return func() *sql.DB {
			db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	}}}
	if os.Getenv(envPostgresDSN) != "" {
		dbs = append(dbs, legacyDB{"postgres", func(t *testing.T) func() *sql.DB {
			dsn := freshSchema(t)
			return func() *sql.DB {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		}})
	}
	return dbs
}

// TestMigrateNodeTable opens a table of the Node.js original with New, from
// several instances at once: every row is kept, the new columns are
// added, and its users keep their IDs (and their live tokens) when they
// log in again.
func TestMigrateNodeTable(t *testing.T) {
	for _, l := range legacyDBs(t) {
		t.Run(l.name, func(t *testing.T) {
			open := l.open(t)
			e := newEnv(t, backends()[0], nil)
			byOpenID := e.user("legacy-o")
			byUnionID := e.user("legacy-u")
			byUnionID.UnionID = "u" + byUnionID.OpenID
			byUnionID = e.wx.AddUser(byUnionID)

			db := open()
			schema, insert := nodeSchema, `INSERT INTO user(openId, nickName, gender) VALUES(?, ?, 2)`
			if l.name == "postgres" {
				schema, insert = pgQuery(schema), pgQuery(insert)
			}
			if _, err := db.Exec(schema); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{byOpenID.OpenID, byUnionID.UnionID, "o'legacy%_"} {
				if _, err := db.Exec(insert, id, "nick-"+id); err != nil {
					t.Fatal(err)
				}
			}

			// Eight instances start at once on the old table.
			const n = 8
			clients := make([]*mpauthx.Client, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				cfg := e.cfg
				cfg.DB = open()
				wg.Go(func() { clients[i], errs[i] = mpauthx.New(cfg) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("New %d on the Node table: %v", i, err)
				}
				t.Cleanup(func() { clients[i].Close() })
			}
			c := clients[0]
			for _, id := range []string{byOpenID.OpenID, byUnionID.UnionID, "o'legacy%_"} {
				u, err := c.User(bg, id)
				if err != nil || u.NickName != "nick-"+id || u.Gender != 2 || u.OpenID != "" {
					t.Errorf("User(%q) after the migration = %+v, %v; want the old row", id, u, err)
				}
			}
			// Returning users keep their IDs, whichever flow they use.
			for _, u := range []mpauthxtest.User{byOpenID, byUnionID} {
				wantID := u.OpenID
				if u.UnionID != "" {
					wantID = u.UnionID
				}
				r1, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				if err != nil {
					t.Fatal(err)
				}
				data, iv := e.wx.UserInfo(u.OpenID)
				r2, err := clients[1].Authorize(bg, e.wx.Code(u.OpenID), data, iv)
				if err != nil {
					t.Fatal(err)
				}
				if id := c.ExtractOpenID(r1.Response); id != wantID || r2.Response != r1.Response {
					t.Errorf("legacy user %q logged in as %q and %q", wantID, id, c.ExtractOpenID(r2.Response))
				}
				got, err := c.User(bg, wantID)
				if err != nil || got.OpenID != u.OpenID || got.UnionID != u.UnionID {
					t.Errorf("User(%q) after logins = %+v, %v; want openid and unionid recorded", wantID, got, err)
				}
			}
			var rows int
			if err := db.QueryRow(map[bool]string{true: `SELECT count(*) FROM "user"`, false: `SELECT count(*) FROM user`}[l.name == "postgres"]).Scan(&rows); err != nil || rows != 3 {
				t.Errorf("rows after the logins = %d, %v; want 3", rows, err)
			}
		})
	}
}

// TestMigrateRefusedExplains checks New's error on a table it may not
// migrate (a read-only SQLite file): it names the columns and the
// statements to run.
func TestMigrateRefusedExplains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(nodeSchema); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	e := newEnv(t, backends()[0], nil)
	cfg := e.cfg
	cfg.DB = ro
	c, err := mpauthx.New(cfg)
	if err == nil {
		c.Close()
		t.Fatal("New migrated a read-only table")
	}
	for _, want := range []string{"wxOpenId", "ALTER TABLE user ADD COLUMN phone text", "CREATE UNIQUE INDEX"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %q does not mention %q", err, want)
		}
	}
}
