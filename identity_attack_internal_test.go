package mpauthx

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// sqliteFileStores opens n *sql.DB on one SQLite file (as n processes
// would) after setup ran on the first, and returns a store on each.
func sqliteFileStores(t *testing.T, n int, setup string) ([]*store, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "u.db")
	var dbs []*sql.DB
	for i := range n {
		db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			if _, err := db.Exec(setup); err != nil {
				t.Fatal(err)
			}
		}
		dbs = append(dbs, db)
	}
	stores := make([]*store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = newStore(context.Background(), dbs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: New: %v", i, err)
		}
		t.Cleanup(func() { stores[i].close() })
	}
	return stores, dbs[0]
}

// nodeTable is the Node.js original's user table, without mpauthx's
// columns.
const nodeTable = `CREATE TABLE user(openId text primary key not null, city text, country text, gender integer, language text, nickName text, province text)`

// TestSQLiteTwoDBsFirstLogins: concurrent first logins of one person
// through three WeChat apps on three *sql.DB of one SQLite file (three
// processes), migrating a Node.js original's table at once: one user.
func TestSQLiteTwoDBsFirstLogins(t *testing.T) {
	stores, db := sqliteFileStores(t, 3, nodeTable)
	ctx := context.Background()
	for round := range 4 {
		u := fmt.Sprint("U", round)
		ids := []Identity{
			ident(WeChatMiniProgram, "wx-a", "oA"+u, u),
			ident(WeChatMiniProgram, "wx-b", "oB"+u, u),
			ident(WeChatOfficialAccount, "wx-oa", "oOA"+u, u),
		}
		got := make([]string, 3*len(ids)*2)
		errs := make([]error, len(got))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() {
				<-start
				got[i], errs[i] = stores[i%3].login(ctx, ids[(i/3)%len(ids)], nil, "")
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d login %d: %v", round, i, err)
			}
			if got[i] != got[0] {
				t.Fatalf("round %d: login %d got %q, login 0 %q", round, i, got[i], got[0])
			}
		}
		if n := count(t, db, `SELECT count(*) FROM user WHERE openId LIKE '%U`+fmt.Sprint(round)+`'`); n != 1 {
			t.Fatalf("round %d: %d users", round, n)
		}
	}
}

// TestLinkRaces: two Links of one identity to two users, and a Link
// racing the identity's own first login, on several instances: the
// identity ends with one user, and every call that did not get it is
// refused (6015).
func TestLinkRaces(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			stores := []*store{instance(false), instance(false), instance(false)}
			ctx := context.Background()
			x := mustLogin(t, stores[0], ident(WeChatWebsite, "web", "w-x", ""), "")
			y := mustLogin(t, stores[0], ident(WeChatWebsite, "web", "w-y", ""), "")
			for round := range 6 {
				id := ident(DouyinMiniProgram, "tt", fmt.Sprint("d-", round), fmt.Sprint("du-", round))
				errs := make([]error, 3)
				var loginUser string
				start := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() { <-start; errs[0] = stores[0].link(ctx, x, id) })
				wg.Go(func() { <-start; errs[1] = stores[1].link(ctx, y, id) })
				wg.Go(func() { <-start; loginUser, errs[2] = stores[2].login(ctx, id, nil, "") })
				close(start)
				wg.Wait()
				owner := ""
				for _, r := range []struct {
					user string
					err  error
				}{{x, errs[0]}, {y, errs[1]}, {loginUser, errs[2]}} {
					switch {
					case r.err == nil && owner == "":
						owner = r.user
					case r.err == nil && r.user != owner:
						t.Fatalf("round %d: the identity went to %q and %q", round, owner, r.user)
					case r.err != nil && Code(r.err) != StatusAccountConflict:
						t.Fatalf("round %d: %v", round, r.err)
					}
				}
				if n := count(t, db, `SELECT count(*) FROM user_identity`); n != 3+round {
					t.Fatalf("round %d: %d identities, want %d", round, n, 3+round)
				}
				if got := mustLogin(t, stores[0], id, ""); got != owner {
					t.Fatalf("round %d: the login after = %q, want %q", round, got, owner)
				}
			}
		})
	}
}

// TestNoTakeoverByCraftedIDs: identifiers that differ from another
// user's only by SQL wildcards, quotes, a Unicode lookalike or their
// platform, a unionid of one family met in another, and a new user ID
// that a row of the application already holds: each a new user, never
// another's.
func TestNoTakeoverByCraftedIDs(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			s := instance(true)
			ctx := context.Background()
			victim := mustLogin(t, s, ident(WeChatMiniProgram, "wx", "oVictim_1", "UVictim"), "")
			if victim != "UVictim" {
				t.Fatalf("victim = %q", victim)
			}
			// The application's own row, holding a Douyin new user's ID.
			if _, err := s.db.ExecContext(ctx, s.d.q[qInsertUser], "douyin:dd", nil, nil, nil, nil, nil, nil, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{victim: true, "douyin:dd": true}
			for _, id := range []Identity{
				ident(WeChatMiniProgram, "wx", "oVictim%", ""),
				ident(WeChatMiniProgram, "wx", "oVictim__", ""),
				ident(WeChatMiniProgram, "wx", "oVictim_1'", ""),
				ident(WeChatMiniProgram, "wx", "оVictim_1", ""), // Cyrillic о
				ident(WeChatMiniProgram, "wx", "OVICTIM_1", ""),
				ident(WeChatMiniProgram, "wx2", "oVictim_1x", "UVictim%"),
				ident(QQMiniProgram, "wx", "oVictim_1", "UVictim"),     // QQ's unionid namespace
				ident(DouyinMiniProgram, "tt", "oVictim_1", "UVictim"), // Douyin's
				ident(AlipayMiniProgram, "wx", "oVictim_1", ""),        // same app ID and openid string
				ident(AlipayMiniProgram, "ali", "UVictim", ""),         // the victim's ID as an openid
				ident(DouyinMiniProgram, "tt", "dd", ""),               // "douyin:dd" is taken
			} {
				got, err := s.login(ctx, id, nil, "")
				if err != nil {
					t.Fatalf("%+v: %v", id, err)
				}
				if seen[got] {
					t.Fatalf("%+v logged in as the existing user %q", id, got)
				}
				seen[got] = true
			}
			if n := count(t, db, `SELECT count(*) FROM user_identity WHERE userId = ?`, victim); n != 1 {
				t.Fatalf("the victim has %d identities, want 1", n)
			}
		})
	}
}
