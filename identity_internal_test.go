package mpauthx

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// testDB opens one database for a test: instance returns a store on it,
// as another backend instance would have (on SQLite, sharing the *sql.DB,
// as processes of one machine share the file; on PostgreSQL, with a pool
// of its own).
type testDB struct {
	name string
	open func(t *testing.T) (db *sql.DB, instance func(linkByPhone bool) *store)
}

// testDBs returns SQLite, and PostgreSQL (a fresh schema of the database
// of MPAUTHX_POSTGRES_DSN) when that is set.
func testDBs() []testDB {
	newStoreOn := func(t *testing.T, db *sql.DB, linkByPhone bool) *store {
		t.Helper()
		s, err := newStore(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		s.linkByPhone = linkByPhone
		t.Cleanup(func() { s.close() })
		return s
	}
	dbs := []testDB{{"sqlite", func(t *testing.T) (*sql.DB, func(bool) *store) {
		db, err := OpenSQLite(filepath.Join(t.TempDir(), "u.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, func(linkByPhone bool) *store { return newStoreOn(t, db, linkByPhone) }
	}}}
	dsn := os.Getenv("MPAUTHX_POSTGRES_DSN")
	if dsn == "" {
		return dbs
	}
	return append(dbs, testDB{"postgres", func(t *testing.T) (*sql.DB, func(bool) *store) {
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		schema := "mpauthx_itest_" + strings.ToLower(rand.Text()[:12])
		if _, err := admin.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
			admin.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			defer admin.Close()
			if _, err := admin.Exec(`DROP SCHEMA "` + schema + `" CASCADE`); err != nil {
				t.Errorf("dropping schema %s: %v", schema, err)
			}
		})
		sdsn := dsn + " search_path=" + schema
		if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			sdsn = u.String()
		}
		open := func() *sql.DB {
			db, err := OpenPostgres(sdsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
		first := open()
		return first, func(linkByPhone bool) *store { return newStoreOn(t, open(), linkByPhone) }
	}})
}

// wx, oa, web, qq, douyin and alipay make identities of one app of each
// platform.
func ident(p Platform, appID, openID, unionID string) Identity {
	return Identity{Platform: p, AppID: appID, OpenID: openID, UnionID: unionID}
}

// mustLogin logs ident in through s and returns the user ID.
func mustLogin(t *testing.T, s *store, id Identity, phone string) string {
	t.Helper()
	userID, err := s.login(context.Background(), id, nil, phone)
	if err != nil {
		t.Fatalf("login %+v: %v", id, err)
	}
	return userID
}

// count runs a count(*) query written for SQLite on db.
func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	if isPostgres(db) {
		q = strings.NewReplacer("user_identity", `"user_identity"`, "FROM user ", `FROM "user" `, "userId", `"userId"`, "phone", `"phone"`, "?", "$1").Replace(q)
	}
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// isPostgres reports whether db is a PostgreSQL database.
func isPostgres(db *sql.DB) bool {
	d, err := dialectFor(db.Driver())
	return err == nil && !d.oneWriter
}

func TestNewUserID(t *testing.T) {
	long := strings.Repeat("o", 300)
	for _, tt := range []struct {
		id   Identity
		want string
	}{
		{ident(WeChatMiniProgram, "wx", "o-1", ""), "o-1"},
		{ident(WeChatMiniProgram, "wx", "o-1", "u-1"), "u-1"},
		{ident(WeChatOfficialAccount, "wx", "o-1", "u-1"), "wechat-oa:o-1"},
		{ident(WeChatWebsite, "wx", "o-1", ""), "wechat-web:o-1"},
		{ident(QQMiniProgram, "qq", "o-1", "u-1"), "qq:o-1"},
		{ident(DouyinMiniProgram, "tt", "o-1", ""), "douyin:o-1"},
		{ident(AlipayMiniProgram, "ali", "2088102", ""), "alipay:2088102"},
	} {
		if got := newUserID(tt.id); got != tt.want {
			t.Errorf("newUserID(%+v) = %q, want %q", tt.id, got, tt.want)
		}
	}
	// An openid too long for a user ID with its prefix, or with a
	// character a user ID may not hold: a hash, per app.
	for _, openID := range []string{long, "o\x01ctl", "o|bar"} {
		a, b := newUserID(ident(DouyinMiniProgram, "tt-a", openID, "")), newUserID(ident(DouyinMiniProgram, "tt-b", openID, ""))
		if !validUserID(a) || !strings.HasPrefix(a, "douyin:") || a == b {
			t.Errorf("newUserID of openid %q = %q (app b: %q): want a valid douyin: ID per app", openID, a, b)
		}
	}
	if id := randomUserID(DouyinMiniProgram); !validUserID(id) || !strings.HasPrefix(id, "douyin:") {
		t.Errorf("randomUserID = %q", id)
	}
}

// TestIdentityFamilies: unionids link the platforms of one family only
// (WeChat's mini programs, official accounts and websites), new users of
// each platform get IDs of their own, the rows of earlier versions are
// found only by WeChat identifiers, and a new user never takes a row the
// lookups did not find.
func TestIdentityFamilies(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			s := instance(false)
			ctx := context.Background()
			u := "u-" + rand.Text()[:8]
			mp := mustLogin(t, s, ident(WeChatMiniProgram, "wx-mp", "o-mp", u), "")
			if mp != u {
				t.Fatalf("WeChat mini program user = %q, want the unionid", mp)
			}
			for _, id := range []Identity{
				ident(WeChatOfficialAccount, "wx-oa", "o-oa", u),
				ident(WeChatWebsite, "wx-web", "o-web", u),
			} {
				if got := mustLogin(t, s, id, ""); got != mp {
					t.Errorf("%s with the same unionid = %q, want %q", id.Platform, got, mp)
				}
			}
			// The same unionid string in another family is another person.
			douyin := mustLogin(t, s, ident(DouyinMiniProgram, "tt-1", "o-tt-1", u), "")
			if douyin != "douyin:o-tt-1" {
				t.Errorf("Douyin user = %q, want douyin:o-tt-1", douyin)
			}
			if got := mustLogin(t, s, ident(DouyinMiniProgram, "tt-2", "o-tt-2", u), ""); got != douyin {
				t.Errorf("second Douyin app with the unionid = %q, want %q", got, douyin)
			}
			if got := mustLogin(t, s, ident(QQMiniProgram, "qq-1", "o-qq", u), ""); got != "qq:o-qq" {
				t.Errorf("QQ user = %q", got)
			}
			// A user row of the application's named like a new user's ID
			// is not taken over.
			if _, err := db.Exec(map[bool]string{false: `INSERT INTO user(openId, nickName) VALUES('alipay:2088999', 'theirs')`,
				true: `INSERT INTO "user"("openId", "nickName") VALUES('alipay:2088999', 'theirs')`}[isPostgres(db)]); err != nil {
				t.Fatal(err)
			}
			ali := mustLogin(t, s, ident(AlipayMiniProgram, "ali", "2088999", ""), "")
			if ali == "alipay:2088999" || !strings.HasPrefix(ali, "alipay:") || !validUserID(ali) {
				t.Errorf("Alipay user = %q; want a fresh alipay: ID", ali)
			}
			if got := mustLogin(t, s, ident(AlipayMiniProgram, "ali", "2088999", ""), ""); got != ali {
				t.Errorf("returning Alipay user = %q, want %q", got, ali)
			}
			// Rows of earlier versions (keyed by a WeChat openid or
			// unionid) are found by WeChat identifiers only.
			for _, legacy := range []string{"o-legacy", "u-legacy"} {
				if _, err := db.Exec(map[bool]string{false: `INSERT INTO user(openId) VALUES(?)`, true: `INSERT INTO "user"("openId") VALUES($1)`}[isPostgres(db)], legacy); err != nil {
					t.Fatal(err)
				}
			}
			if got := mustLogin(t, s, ident(DouyinMiniProgram, "tt-1", "o-legacy", ""), ""); got == "o-legacy" {
				t.Error("a Douyin openid found the WeChat user keyed by it")
			}
			if got := mustLogin(t, s, ident(WeChatOfficialAccount, "wx-oa", "o-legacy", ""), ""); got == "o-legacy" {
				t.Error("an official account's openid found the mini-program user keyed by it")
			}
			if got := mustLogin(t, s, ident(WeChatOfficialAccount, "wx-oa", "o-oa-2", "u-legacy"), ""); got != "u-legacy" {
				t.Errorf("an official account's unionid found %q, want the user keyed by it", got)
			}
			if got := mustLogin(t, s, ident(WeChatMiniProgram, "wx-mp", "o-legacy", ""), ""); got != "o-legacy" {
				t.Errorf("the mini program's openid found %q, want the user keyed by it", got)
			}
			if got := mustLogin(t, s, ident(QQMiniProgram, "qq-1", "o-qq-2", "u-legacy"), ""); got == "u-legacy" {
				t.Error("a QQ unionid found the WeChat user keyed by it")
			}
			got, found, err := s.user(ctx, mp, WeChatOfficialAccount, "wx-oa")
			if err != nil || !found || got.OpenID != "o-oa" || got.UnionID != u || len(got.Identities) != 3 {
				t.Errorf("user(%q) as read by the official account = %+v, %v", mp, got, err)
			}
			if n := count(t, db, `SELECT count(*) FROM user_identity WHERE userId = ?`, douyin); n != 2 {
				t.Errorf("the Douyin user has %d identities, want 2", n)
			}
		})
	}
}

// TestLinkByPhone: with LinkByPhone, a phone login whose identifiers
// match nobody finds the user holding that verified phone; identifiers
// of one user and a phone of another, or a phone of two users, are
// refused with nothing written; without it, phones link nothing.
func TestLinkByPhone(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			on, off := instance(true), instance(false)
			ctx := context.Background()
			const p1, p2, p3 = "13800000001", "13800000002", "13800000003"
			a := mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-a", ""), p1)
			// Douyin, phone p1: the WeChat user.
			if got := mustLogin(t, on, ident(DouyinMiniProgram, "tt", "o-tt-a", ""), p1); got != a {
				t.Fatalf("Douyin phone login = %q, want the WeChat user %q", got, a)
			}
			if got := mustLogin(t, on, ident(DouyinMiniProgram, "tt", "o-tt-a", ""), ""); got != a {
				t.Fatalf("Douyin login without phone after the link = %q, want %q", got, a)
			}
			// Without LinkByPhone: a new user, whatever the phone.
			if got := mustLogin(t, off, ident(AlipayMiniProgram, "ali", "2088-a", ""), p1); got == a {
				t.Fatal("without LinkByPhone a phone login found the phone's user")
			}
			// Not a phone login: the phone links nothing.
			if got := mustLogin(t, on, ident(QQMiniProgram, "qq", "o-qq-a", ""), ""); got == a {
				t.Fatal("a login without phone found a user")
			}
			// p1 is held by two users now (the Alipay one recorded it):
			// refused.
			rows := count(t, db, `SELECT count(*) FROM user_identity`)
			if _, err := on.login(ctx, ident(DouyinMiniProgram, "tt", "o-tt-new", ""), nil, p1); Code(err) != StatusAccountConflict {
				t.Fatalf("phone of two users = %v, want 6015", err)
			}
			// Identifiers of user b, phone of user a: refused, and b keeps
			// its phone.
			b := mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-b", ""), p2)
			mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-c", ""), p3)
			if _, err := on.login(ctx, ident(WeChatMiniProgram, "wx", "o-b", ""), nil, p3); Code(err) != StatusAccountConflict {
				t.Fatalf("identifiers of one user, phone of another = %v, want 6015", err)
			}
			if got, _, _ := on.user(ctx, b, WeChatMiniProgram, "wx"); got.Phone != p2 {
				t.Fatalf("after the refused login b's phone = %q, want %q", got.Phone, p2)
			}
			if n := count(t, db, `SELECT count(*) FROM user_identity`); n != rows+2 {
				t.Fatalf("identities = %d, want %d: a refused login wrote", n, rows+2)
			}
			// The same user's own phone, or a new one nobody holds: fine.
			if got := mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-b", ""), p2); got != b {
				t.Fatalf("b's login with b's phone = %q", got)
			}
			if got := mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-b", ""), "13800000009"); got != b {
				t.Fatalf("b's login with a new phone = %q", got)
			}
			if got, _, _ := on.user(ctx, b, WeChatMiniProgram, "wx"); got.Phone != "13800000009" {
				t.Fatalf("b's phone = %q, want the new one", got.Phone)
			}
			// A login without phone leaves the phone alone.
			mustLogin(t, on, ident(WeChatMiniProgram, "wx", "o-b", ""), "")
			if got, _, _ := on.user(ctx, b, WeChatMiniProgram, "wx"); got.Phone != "13800000009" {
				t.Fatalf("after a login without phone b's phone = %q", got.Phone)
			}
		})
	}
}

// TestRefusalDoesNotFailOthers: a refused login in a batch of concurrent
// logins fails alone; the others succeed.
func TestRefusalDoesNotFailOthers(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			_, instance := d.open(t)
			s := instance(false)
			ctx := context.Background()
			mustLogin(t, s, ident(WeChatMiniProgram, "wx-a", "o-x", ""), "")
			mustLogin(t, s, ident(WeChatMiniProgram, "wx-b", "o-y", "u-y"), "")
			const n = 64
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					id := ident(WeChatMiniProgram, "wx-a", fmt.Sprint("o-many-", i), "")
					if i == n/2 {
						id = ident(WeChatMiniProgram, "wx-a", "o-x", "u-y") // two users
					}
					_, errs[i] = s.login(ctx, id, &UserInfo{NickName: "n"}, "")
				})
			}
			wg.Wait()
			for i, err := range errs {
				if (i == n/2) != (Code(err) == StatusAccountConflict) || (i != n/2 && err != nil) {
					t.Errorf("login %d = %v", i, err)
				}
			}
		})
	}
}

// TestConcurrentLoginsAcrossPlatforms: one person logs in through a
// WeChat mini program, official account and website (one unionid) at
// once, from three instances, many times each: one user, three
// identities. With LinkByPhone, the first phone logins of one person
// through those and Douyin and Alipay at once make one user too.
func TestConcurrentLoginsAcrossPlatforms(t *testing.T) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) {
			db, instance := d.open(t)
			stores := []*store{instance(true), instance(true), instance(true)}
			ctx := context.Background()
			for round := range 5 {
				u := fmt.Sprint("u-round-", round, "-", rand.Text()[:6])
				phone := fmt.Sprint("1390000000", round)
				ids := []Identity{
					ident(WeChatMiniProgram, "wx-mp", "o-mp-"+u, u),
					ident(WeChatOfficialAccount, "wx-oa", "o-oa-"+u, u),
					ident(WeChatWebsite, "wx-web", "o-web-"+u, u),
					ident(DouyinMiniProgram, "tt", "o-tt-"+u, ""), // phone logins below
					ident(AlipayMiniProgram, "ali", "2088-"+u, ""),
				}
				withPhone := round%2 == 1
				if !withPhone {
					ids = ids[:3] // WeChat's: linked by the unionid
				}
				const per = 4
				got := make([]string, len(ids)*per*len(stores))
				errs := make([]error, len(got))
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range got {
					wg.Go(func() {
						<-start
						p := ""
						if withPhone {
							p = phone
						}
						got[i], errs[i] = stores[i%len(stores)].login(ctx, ids[i%len(ids)], nil, p)
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: login %d (%s): %v", round, i, ids[i%len(ids)].Platform, err)
					}
					if got[i] != got[0] {
						t.Fatalf("round %d: login %d (%s) got user %q, login 0 %q", round, i, ids[i%len(ids)].Platform, got[i], got[0])
					}
				}
				if n := count(t, db, `SELECT count(*) FROM user_identity WHERE userId = ?`, got[0]); n != len(ids) {
					t.Fatalf("round %d: the user has %d identities, want %d", round, n, len(ids))
				}
				if n := count(t, db, `SELECT count(*) FROM user WHERE phone = ?`, phone); withPhone && n != 1 {
					t.Fatalf("round %d: %d users hold the phone, want 1", round, n)
				}
			}
		})
	}
}

// BenchmarkStoreLogin measures store.login on SQLite alone (no WeChat, no
// Redis), 32 goroutines at a time as in a busy server: new users (the
// identity, the rows of earlier versions, two inserts) and returning ones
// (one index lookup and the profile). Compare its CPU time between
// versions: the batcher makes its wall time depend on the machine's load.
func BenchmarkStoreLogin(b *testing.B) {
	for _, returning := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "returning"}[returning], func(b *testing.B) {
			db, err := OpenSQLite(filepath.Join(b.TempDir(), "u.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := newStore(context.Background(), db)
			if err != nil {
				b.Fatal(err)
			}
			defer s.close()
			profile := &UserInfo{NickName: "bench", City: "Guangzhou", Province: "Guangdong", Country: "CN", Language: "zh_CN", Gender: 1}
			const pool = 2000
			id := func(i int64) Identity {
				return ident(WeChatMiniProgram, "wx-bench", "o-bench-"+strconv.FormatInt(i, 10), "")
			}
			if returning {
				for i := range int64(pool) {
					if _, err := s.login(context.Background(), id(i), profile, ""); err != nil {
						b.Fatal(err)
					}
				}
			}
			var n atomic.Int64
			b.SetParallelism(16) // 32 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if returning {
						i %= pool
					}
					if _, err := s.login(context.Background(), id(i), profile, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
