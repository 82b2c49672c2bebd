package mpauthx_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

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

// app is one mini program of a business: its fake WeChat and its Client.
type app struct {
	wx *mpauthxtest.Server
	c  *mpauthx.Client
}

// code logs openID in through a and returns the Result and error.
func (a app) login(openID string) (mpauthx.Result, error) {
	return a.c.AuthorizeCode(bg, a.wx.Code(openID))
}

// identityRows counts the rows of the identity table.
func (e *env) identityRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.queryRow(`SELECT count(*) FROM user_identity`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIdentities: the identity rules of SPEC section 11 with two WeChat
// mini programs sharing a database, a Redis and a Sku. A login finds the
// user by its identity or its unionid; the person's apps are listed in
// User.Identities; a unionid learnt later joins the user it names without
// changing any ID; identifiers of two users are refused with 6015 and
// nothing is written; Link binds an app's identity to a user, and refuses
// another user's.
func TestIdentities(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		a := app{e.wx, e.c}
		wxB, cb := e.otherApp(t, "b")
		b := app{wxB, cb}
		// id(t)(login) is the user ID of a login's token; it fails t on
		// error.
		id := func(t *testing.T) func(mpauthx.Result, error) string {
			return func(res mpauthx.Result, err error) string {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return e.c.ExtractOpenID(res.Response)
			}
		}

		t.Run("one person, two apps, one unionid", func(t *testing.T) {
			u := "u-" + rand.Text()[:10]
			inA := a.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8], UnionID: u})
			inB := b.wx.AddUser(mpauthxtest.User{OpenID: "o-b-" + rand.Text()[:8], UnionID: u})
			rows := e.userRows(t)
			ra, err := a.login(inA.OpenID)
			if got := id(t)(ra, err); got != u {
				t.Fatalf("first login's user ID = %q, want the unionid", got)
			}
			rb, err := b.login(inB.OpenID)
			if id(t)(rb, err) != u || rb.Response != ra.Response {
				t.Fatalf("login through B = %q, want A's token", rb.Response)
			}
			if n := e.userRows(t) - rows; n != 1 {
				t.Fatalf("%d user rows added, want 1", n)
			}
			want := []mpauthx.Identity{
				{Platform: mpauthx.WeChatMiniProgram, AppID: a.wx.AppID, OpenID: inA.OpenID, UnionID: u},
				{Platform: mpauthx.WeChatMiniProgram, AppID: b.wx.AppID, OpenID: inB.OpenID, UnionID: u},
			}
			slices.SortFunc(want, func(x, y mpauthx.Identity) int { return strings.Compare(x.AppID, y.AppID) })
			for _, app := range []struct {
				c      *mpauthx.Client
				openID string
			}{{a.c, inA.OpenID}, {b.c, inB.OpenID}} {
				got, err := app.c.User(bg, u)
				if err != nil {
					t.Fatal(err)
				}
				if got.OpenID != app.openID || got.UnionID != u || !reflect.DeepEqual(got.Identities, want) {
					t.Errorf("User = %+v; want OpenID %q (the reading app's), UnionID %q, Identities %+v", got, app.openID, u, want)
				}
			}
		})

		t.Run("a unionid learnt later joins, no ID changes", func(t *testing.T) {
			u := "u-" + rand.Text()[:10]
			inA := a.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8], UnionID: u, OmitUnionIDInSession: true})
			inB := b.wx.AddUser(mpauthxtest.User{OpenID: "o-b-" + rand.Text()[:8], UnionID: u})
			first := id(t)(a.login(inA.OpenID)) // no unionid: the openid
			if first != inA.OpenID {
				t.Fatalf("user ID = %q, want the openid", first)
			}
			// Authorize reveals the unionid (in encryptedData): recorded.
			data, iv := a.wx.UserInfo(inA.OpenID)
			if got := id(t)(a.c.Authorize(bg, a.wx.Code(inA.OpenID), data, iv)); got != first {
				t.Fatalf("Authorize got user %q, want %q", got, first)
			}
			if got := id(t)(b.login(inB.OpenID)); got != first {
				t.Fatalf("login through B with the unionid got user %q, want %q", got, first)
			}
			got, err := b.c.User(bg, first)
			if err != nil || got.UnionID != u || len(got.Identities) != 2 || got.OpenID != inB.OpenID {
				t.Fatalf("User = %+v, %v", got, err)
			}
		})

		t.Run("two users matched: 6015, nothing written", func(t *testing.T) {
			// The person used A before WeChat gave A their unionid, and B,
			// which gave it, since: two users. Now A gives the unionid.
			u := "u-" + rand.Text()[:10]
			inA := a.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8], UnionID: u, OmitUnionIDInSession: true})
			inB := b.wx.AddUser(mpauthxtest.User{OpenID: "o-b-" + rand.Text()[:8], UnionID: u})
			userA := id(t)(a.login(inA.OpenID))
			userB := id(t)(b.login(inB.OpenID))
			if userA == userB {
				t.Fatal("the test needs two users")
			}
			rows, idents := e.userRows(t), e.identityRows(t)
			before, _ := a.c.User(bg, userA)
			inA.OmitUnionIDInSession = false
			a.wx.AddUser(inA)
			res, err := a.login(inA.OpenID)
			if mpauthx.Code(err) != mpauthx.StatusAccountConflict || res.Response != "" || res.StatusCode != mpauthx.StatusAccountConflict {
				t.Fatalf("login matching two users = %+v, %v; want 6015 and no token", res, err)
			}
			if strings.Contains(err.Error(), u) || strings.Contains(err.Error(), inA.OpenID) {
				t.Errorf("the error names the person's IDs: %v", err)
			}
			after, _ := a.c.User(bg, userA)
			if e.userRows(t) != rows || e.identityRows(t) != idents || !reflect.DeepEqual(after, before) {
				t.Fatalf("the refused login wrote: rows %d -> %d, identities %d -> %d, user %+v -> %+v",
					rows, e.userRows(t), idents, e.identityRows(t), before, after)
			}
			// Still refused, as often as asked; the other door still works.
			if _, err := a.login(inA.OpenID); mpauthx.Code(err) != mpauthx.StatusAccountConflict {
				t.Fatalf("second try = %v, want 6015", err)
			}
			if got := id(t)(b.login(inB.OpenID)); got != userB {
				t.Fatalf("login through B = %q, want %q", got, userB)
			}
		})

		t.Run("Link", func(t *testing.T) {
			inA := a.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8]})
			inB := b.wx.AddUser(mpauthxtest.User{OpenID: "o-b-" + rand.Text()[:8]})
			user := id(t)(a.login(inA.OpenID))
			for _, tt := range []struct {
				name, userID, code string
				want               mpauthx.StatusCode
			}{
				{"no userID", "", "c", mpauthx.StatusRequiredParamsMissing},
				{"bad userID", "a|b", "c", mpauthx.StatusRequiredParamsMissing},
				{"no code", user, "", mpauthx.StatusRequiredParamsMissing},
				{"unknown user", "o-nobody-" + rand.Text()[:8], b.wx.Code(inB.OpenID), mpauthx.StatusUserNotExist},
				{"invalid code", user, "not-a-code", mpauthx.StatusSessionKeyRequestError},
			} {
				if err := b.c.Link(bg, tt.userID, tt.code); mpauthx.Code(err) != tt.want {
					t.Errorf("%s: Link = %v, want %d", tt.name, err, tt.want)
				}
			}
			rows := e.userRows(t)
			if err := b.c.Link(bg, user, b.wx.Code(inB.OpenID)); err != nil {
				t.Fatalf("Link: %v", err)
			}
			if err := b.c.Link(bg, user, b.wx.Code(inB.OpenID)); err != nil {
				t.Fatalf("Link again: %v", err)
			}
			if got := id(t)(b.login(inB.OpenID)); got != user {
				t.Fatalf("login through B after Link = %q, want %q", got, user)
			}
			if e.userRows(t) != rows {
				t.Fatal("Link added a user")
			}
			got, err := b.c.User(bg, user)
			if err != nil || len(got.Identities) != 2 || got.OpenID != inB.OpenID {
				t.Fatalf("User after Link = %+v, %v", got, err)
			}
			// B's identity is the first user's now: another user may not
			// take it, and nothing changes.
			other := id(t)(a.login(a.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8]}).OpenID))
			idents := e.identityRows(t)
			if err := b.c.Link(bg, other, b.wx.Code(inB.OpenID)); mpauthx.Code(err) != mpauthx.StatusAccountConflict {
				t.Fatalf("Link of another user's identity = %v, want 6015", err)
			}
			if e.identityRows(t) != idents {
				t.Fatal("the refused Link wrote")
			}
			if got := id(t)(b.login(inB.OpenID)); got != user {
				t.Fatalf("after the refused Link, B logs in as %q, want %q", got, user)
			}
		})
	})
}

// TestConcurrentLoginsThreeApps: one person logs in through three mini
// programs (three AppIDs, one unionid) at once, on two instances each
// (Clients with their own Redis connections and, on PostgreSQL, their own
// pools, sharing the database, the Redis and the Sku), several times
// each: every login gets the one live token of one user, who has one
// identity per app.
func TestConcurrentLoginsThreeApps(t *testing.T) {
	type dbKind struct {
		name string
		open func(t *testing.T) func() *sql.DB // a handle per instance
	}
	kinds := []dbKind{{"sqlite", func(t *testing.T) func() *sql.DB {
		db := tempSQLite(t) // one machine: the instances share the handle
		return func() *sql.DB { return db }
	}}}
	if os.Getenv(envPostgresDSN) != "" {
		kinds = append(kinds, dbKind{"postgres", func(t *testing.T) func() *sql.DB {
			dsn := freshSchema(t)
			return func() *sql.DB {
				db, err := mpauthx.OpenPostgres(dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		}})
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for _, b := range backends() {
				t.Run(b.name, func(t *testing.T) {
					open := k.open(t)
					e := newWorld(t)
					e.rdb, e.mr = b.open(t)
					e.db = open()
					const apps, instances, per = 3, 2, 3
					wxs := make([]*mpauthxtest.Server, apps)
					var clients []*mpauthx.Client
					for i := range wxs {
						wxs[i] = mpauthxtest.NewServer(fmt.Sprintf("wx-app%d-%s", i, rand.Text()[:8]), "s3cr3t-"+fmt.Sprint(i))
						t.Cleanup(wxs[i].Close)
						for range instances {
							cfg := e.cfg
							cfg.AppID, cfg.AppSecret, cfg.APIBase = wxs[i].AppID, wxs[i].AppSecret, wxs[i].URL
							cfg.Redis, cfg.DB = cloneRedis(t, e.rdb), open()
							c, err := mpauthx.New(cfg)
							if err != nil {
								t.Fatal(err)
							}
							t.Cleanup(func() { c.Close() })
							clients = append(clients, c)
						}
					}
					for round := range 3 {
						u := fmt.Sprint("u-three-", round, "-", rand.Text()[:8])
						openIDs := make([]string, apps)
						for i, wx := range wxs {
							openIDs[i] = wx.AddUser(mpauthxtest.User{OpenID: fmt.Sprint("o-app", i, "-", u), UnionID: u}).OpenID
						}
						n := len(clients) * per
						codes := make([]string, n)
						for j := range codes {
							app := (j % len(clients)) / instances
							codes[j] = wxs[app].Code(openIDs[app])
						}
						tokens := make([]string, n)
						errs := make([]error, n)
						start := make(chan struct{})
						var wg sync.WaitGroup
						for j := range n {
							wg.Go(func() {
								<-start
								var res mpauthx.Result
								res, errs[j] = clients[j%len(clients)].AuthorizeCode(bg, codes[j])
								tokens[j] = res.Response
							})
						}
						rows := e.userRows(t)
						close(start)
						wg.Wait()
						for j, err := range errs {
							if err != nil {
								t.Fatalf("round %d: login %d: %v", round, j, err)
							}
							if tokens[j] != tokens[0] {
								t.Fatalf("round %d: login %d got %q, login 0 %q", round, j, tokens[j], tokens[0])
							}
						}
						if id := clients[0].ExtractOpenID(tokens[0]); id != u {
							t.Fatalf("round %d: user ID %q, want the unionid", round, id)
						}
						if added := e.userRows(t) - rows; added != 1 {
							t.Fatalf("round %d: %d users added, want 1", round, added)
						}
						got, err := clients[0].User(bg, u)
						if err != nil || len(got.Identities) != apps {
							t.Fatalf("round %d: User = %+v, %v; want %d identities", round, got, err, apps)
						}
						for _, c := range clients {
							if ok, err := c.IsTokenValid(bg, tokens[0]); !ok || err != nil {
								t.Fatalf("round %d: IsTokenValid = %v, %v", round, ok, err)
							}
						}
						if keys := scanKeys(t, e.rdb, "mpauthx:{"+u+"|"+e.cfg.Sku+"}:session"); len(keys) != 1 {
							t.Fatalf("round %d: session keys %q, want one", round, keys)
						}
					}
				})
			}
		})
	}
}

// v1Schema is the user table of the previous mpauthx (one mini program's
// openid and unionid in columns), as its databases hold it.
const v1Schema = `CREATE TABLE IF NOT EXISTS user(
  openId text primary key not null,
  city text, country text, gender integer,
  language text, nickName text, province text,
  wxOpenId text, unionId text, phone text);
CREATE UNIQUE INDEX IF NOT EXISTS user_wxOpenId ON user(wxOpenId);
CREATE UNIQUE INDEX IF NOT EXISTS user_unionId ON user(unionId)`

// v1PostgresSchema is v1Schema in PostgreSQL.
const v1PostgresSchema = `CREATE TABLE IF NOT EXISTS "user"(
  "openId" text PRIMARY KEY NOT NULL,
  "city" text, "country" text, "gender" integer,
  "language" text, "nickName" text, "province" text,
  "wxOpenId" text, "unionId" text, "phone" text);
CREATE UNIQUE INDEX IF NOT EXISTS "user_wxOpenId" ON "user"("wxOpenId");
CREATE UNIQUE INDEX IF NOT EXISTS "user_unionId" ON "user"("unionId")`

// TestMigrateV1Table opens a table of the previous mpauthx, and of the
// Node.js original with a person split in two rows, with New from several
// instances at once: every row and phone is kept; returning users keep
// their IDs, found through the old columns and IDs by the app that wrote
// them and by another mini program through the unionid; the split person
// logs in as before (no conflict); and their identities are recorded.
func TestMigrateV1Table(t *testing.T) {
	for _, l := range legacyDBs(t) {
		t.Run(l.name, func(t *testing.T) {
			open := l.open(t)
			e := newEnv(t, backends()[0], nil)
			wxB, _ := e.otherApp(t, "b")
			r := func(name string) string { return name + "-" + rand.Text()[:8] }
			o1, u1, o2, o3, o4, u4 := r("o1"), r("u1"), r("o2"), r("o3"), r("o4"), r("u4")
			db := open()
			schema, insert := v1Schema, `INSERT INTO user(openId, wxOpenId, unionId, phone, nickName) VALUES(?, ?, ?, ?, ?)`
			if l.name == "postgres" {
				schema, insert = v1PostgresSchema, `INSERT INTO "user"("openId", "wxOpenId", "unionId", "phone", "nickName") VALUES($1, $2, $3, $4, $5)`
			}
			if _, err := db.Exec(schema); err != nil {
				t.Fatal(err)
			}
			null := sql.NullString{}
			str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
			for _, row := range [][]any{
				{u1, str(o1), str(u1), str("13800000001"), "one"}, // mpauthx v1, with unionid
				{o2, str(o2), null, null, "two"},                  // mpauthx v1, without
				{o3, null, null, null, "three"},                   // the Node original's
				{o4, null, null, null, "four-o"},                  // the Node original's, one person split:
				{u4, null, null, null, "four-u"},                  // keyed by openid, then by unionid
			} {
				if _, err := db.Exec(insert, row...); err != nil {
					t.Fatal(err)
				}
			}
			e.wx.AddUser(mpauthxtest.User{OpenID: o1, UnionID: u1})
			e.wx.AddUser(mpauthxtest.User{OpenID: o2})
			e.wx.AddUser(mpauthxtest.User{OpenID: o3})
			e.wx.AddUser(mpauthxtest.User{OpenID: o4, UnionID: u4})
			inB := wxB.AddUser(mpauthxtest.User{OpenID: r("ob1"), UnionID: u1})

			const n = 6
			clients := make([]*mpauthx.Client, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				cfg := e.cfg
				cfg.DB = open()
				if i%2 == 1 {
					cfg.AppID, cfg.AppSecret, cfg.APIBase = wxB.AppID, wxB.AppSecret, wxB.URL
				}
				wg.Go(func() { clients[i], errs[i] = mpauthx.New(cfg) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("New %d on the v1 table: %v", i, err)
				}
				t.Cleanup(func() { clients[i].Close() })
			}
			a, b := clients[0], clients[1]
			if got, err := a.User(bg, u1); err != nil || got.OpenID != o1 || got.UnionID != u1 || got.Phone != "13800000001" || got.NickName != "one" || len(got.Identities) != 0 {
				t.Errorf("User(%q) before any login = %+v, %v; want the v1 row", u1, got, err)
			}
			login := func(c *mpauthx.Client, wx *mpauthxtest.Server, openID, want string) {
				t.Helper()
				res, err := c.AuthorizeCode(bg, wx.Code(openID))
				if err != nil {
					t.Fatalf("login of %s: %v", openID, err)
				}
				if got := c.ExtractOpenID(res.Response); got != want {
					t.Errorf("login of %s got user %q, want %q", openID, got, want)
				}
			}
			login(a, e.wx, o1, u1)
			login(b, wxB, inB.OpenID, u1) // another mini program, through the v1 unionId column
			login(a, e.wx, o2, o2)
			login(a, e.wx, o3, o3)
			login(a, e.wx, o4, u4) // as the v1 lookup found them: by ID unionid first
			if got, err := b.User(bg, u1); err != nil || got.OpenID != inB.OpenID || got.Phone != "13800000001" || len(got.Identities) != 2 {
				t.Errorf("User(%q) after the logins = %+v, %v; want both apps' identities and the phone", u1, got, err)
			}
			var rows int
			if err := db.QueryRow(map[bool]string{true: `SELECT count(*) FROM "user"`, false: `SELECT count(*) FROM user`}[l.name == "postgres"]).Scan(&rows); err != nil || rows != 5 {
				t.Errorf("rows after the logins = %d, %v; want 5", rows, err)
			}
		})
	}
}

// A business runs two mini programs on one database, Redis and Sku. A
// person who logged in through the first binds the second with Link:
// logins through either are then the same user, with one token.
func ExampleClient_Link() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	dir, err := os.MkdirTemp("", "mpauthx-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := mpauthx.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	newApp := func(appID string) (*mpauthxtest.Server, *mpauthx.Client) {
		wx := mpauthxtest.NewServer(appID, appID+"-secret")
		c, err := mpauthx.New(mpauthx.Config{AppID: wx.AppID, AppSecret: wx.AppSecret, APIBase: wx.URL,
			Sku: "vip", Redis: rdb, DB: db})
		if err != nil {
			log.Fatal(err)
		}
		return wx, c
	}
	shopWX, shop := newApp("wx-shop")
	defer shopWX.Close()
	defer shop.Close()
	clubWX, club := newApp("wx-club")
	defer clubWX.Close()
	defer club.Close()
	// The apps are not bound to one Open Platform account: no unionid.
	shopWX.AddUser(mpauthxtest.User{OpenID: "o-shop-ann"})
	clubWX.AddUser(mpauthxtest.User{OpenID: "o-club-ann"})

	ctx := context.Background()
	res, err := shop.AuthorizeCode(ctx, shopWX.Code("o-shop-ann"))
	if err != nil {
		log.Fatal(err)
	}
	userID := shop.ExtractOpenID(res.Response)
	// Logged in with the shop's token (valid for every Client of the
	// Sku), the person opens the club app, which sends its wx.login code
	// to a handler behind the Middleware: it links the club's identity.
	if err := club.Link(ctx, userID, clubWX.Code("o-club-ann")); err != nil {
		log.Fatal(err)
	}
	res2, err := club.AuthorizeCode(ctx, clubWX.Code("o-club-ann"))
	if err != nil {
		log.Fatal(err)
	}
	u, err := club.User(ctx, userID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(club.ExtractOpenID(res2.Response), res2.Response == res.Response)
	for _, id := range u.Identities {
		fmt.Println(id.Platform, id.AppID, id.OpenID)
	}
	// Output:
	// o-shop-ann true
	// wechat wx-club o-club-ann
	// wechat wx-shop o-shop-ann
}
