package mpauthx

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// login runs a login of the user with openID userID and profile u
// through s, as Authorize does: on SQLite, in the batcher.
func login(s *store, ctx context.Context, userID string, u *UserInfo) error {
	_, err := s.login(ctx, Identity{Platform: WeChatMiniProgram, OpenID: userID}, u, "")
	return err
}

// upserter returns the batch step of an upsert with args, the profile
// write of a login, through s's prepared statement.
func upserter(s *store, args []any) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmts[qUpsert]).ExecContext(ctx, args...)
		return err
	}
}

// newTestStore opens a SQLite store in a temporary directory.
func newTestStore(t *testing.T) (*store, *sql.DB) {
	t.Helper()
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "u.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := newStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if s.batch == nil {
		t.Fatal("a SQLite store has no upsert batcher")
	}
	return s, db
}

func TestUpsertBatcherCommitsEveryLogin(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener")) // the DB closes in Cleanup, later
	s, db := newTestStore(t)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := &UserInfo{NickName: fmt.Sprint("nick", i), Gender: i % 3}
			errs <- login(s, context.Background(), fmt.Sprint("user", i), u)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		var nick string
		var gender int
		if err := db.QueryRow(`SELECT nickName, gender FROM user WHERE openId = ?`, fmt.Sprint("user", i)).Scan(&nick, &gender); err != nil {
			t.Fatalf("user%d: %v", i, err)
		}
		if nick != fmt.Sprint("nick", i) || gender != i%3 {
			t.Fatalf("user%d: nickName %q gender %d", i, nick, gender)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

func TestUpsertBatcherCancelledContext(t *testing.T) {
	s, db := newTestStore(t)
	defer s.close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := login(s, ctx, "gone", &UserInfo{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("upsert with a cancelled ctx = %v, want context.Canceled", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM user`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d, %v; want none", n, err)
	}
}

func TestUpsertBatcherClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener")) // the DB closes in Cleanup, later
	s, db := newTestStore(t)
	// Hold the one connection, so that queued upserts wait in the batcher.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- login(s, context.Background(), fmt.Sprint("u", i), &UserInfo{}) }()
	}
	closed := make(chan error, 1)
	go func() { closed <- s.close() }()
	// The batcher's transaction waits for tx's connection; release it.
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil && !errors.Is(err, errStoreClosed) {
			t.Fatalf("upsert overtaken by close = %v, want nil or errStoreClosed", err)
		}
	}
	if err := login(s, context.Background(), "late", &UserInfo{}); !errors.Is(err, errStoreClosed) {
		t.Fatalf("upsert after close = %v, want errStoreClosed", err)
	}
}

func TestUpsertBatcherCloseWhileConnectionHeld(t *testing.T) {
	s, db := newTestStore(t)
	// The caller's own transaction holds the pool's one connection: the
	// batch waits for it.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := login(s, ctx, "waiting", &UserInfo{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("upsert while the connection is held = %v, want DeadlineExceeded", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // a deadlock, not a slow machine
		t.Fatal("close is blocked by a batch waiting for the held connection")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM user`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d, %v; the abandoned upsert was written", n, err)
	}
}

// commitOneBatch is a test seam: it runs the upserts of rows through s's batcher's
// commit as one batch, as the loop does when they are queued together,
// whatever the scheduling, and returns each row's answer.
func commitOneBatch(s *store, rows [][]any) []error {
	batch := make([]upsertReq, len(rows))
	for i, args := range rows {
		batch[i] = upsertReq{ctx: context.Background(), run: upserter(s, args), done: make(chan error, 1)}
	}
	s.batch.commit(batch)
	errs := make([]error, len(rows))
	for i, r := range batch {
		errs[i] = <-r.done
	}
	return errs
}

// TestUpsertBatcherOneBadRow commits one batch holding a row that the
// caller's stricter table refuses: the batch's transaction fails, and the
// per-row retry must still store every other row and fail only that one.
func TestUpsertBatcherOneBadRow(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "u.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The caller's own table, stricter than Schema.
	if _, err := db.Exec(`DROP TABLE user`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE user(openId text primary key not null, city text, country text,
		gender integer, language text, nickName text CHECK(length(nickName) <= 20), province text)`); err != nil {
		t.Fatal(err)
	}
	s, err := newStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	const n, bad = 50, 17
	rows := make([][]any, n)
	for i := range n {
		nick := "ok"
		if i == bad {
			nick = strings.Repeat("x", 40)
		}
		rows[i] = []any{fmt.Sprint("user", i), "", "", 0, "", nick, ""}
	}
	for i, err := range commitOneBatch(s, rows) {
		if (err != nil) != (i == bad) {
			t.Errorf("upsert %d = %v; only %d should fail", i, err, bad)
		}
	}
	var count int
	if err := db.QueryRow(`SELECT count(*) FROM user`).Scan(&count); err != nil || count != n-1 {
		t.Fatalf("rows = %d, %v; want %d", count, err, n-1)
	}
}

// openCallerSQLite opens path as a caller might, without OpenSQLite: WAL
// and a busy timeout, go-sqlite3's default deferred BEGIN and an unbounded
// pool, with Schema's table.
func openCallerSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(Schema); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// newUserLogins logs n new users in through s from workers goroutines,
// each user's openID made of prefix and a number, and returns the
// failures. Every other login brings a profile, as Authorize does.
func newUserLogins(s *store, prefix string, n, workers int) []error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				openID := fmt.Sprintf("%s-%d", prefix, i)
				var u *UserInfo
				if i%2 == 0 {
					u = &UserInfo{NickName: openID}
				}
				id, err := s.login(context.Background(), Identity{Platform: WeChatMiniProgram, OpenID: openID}, u, "")
				if err == nil && id != openID {
					err = fmt.Errorf("login of %s returned user ID %q", openID, id)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failures
}

// wantUserRows fails t unless db's user table holds n rows.
func wantUserRows(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM user`).Scan(&rows); err != nil || rows != n {
		t.Fatalf("rows = %d, %v; want %d", rows, err, n)
	}
}

// sharedFileLogins and sharedFileWorkers size the two-writer tests: each
// of two stores logs sharedFileLogins/2 new users in.
const sharedFileLogins, sharedFileWorkers = 1000, 8

// TestTwoStoresOneSQLiteFile logs 1,000 new users in through two *sql.DB
// on one SQLite file, as two instances of a service sharing the file do,
// each with its own store and batcher. A batch reads the user table, then
// writes it: begun deferred, its write is refused at once ("database is
// locked", no busy wait) whenever the other store committed in between.
// Every login must succeed, whether the *sql.DB comes from OpenSQLite or
// from the caller's own DSN.
func TestTwoStoresOneSQLiteFile(t *testing.T) {
	for _, o := range []struct {
		name string
		open func(path string) (*sql.DB, error)
	}{
		{"OpenSQLite", OpenSQLite},
		{"caller's DSN", openCallerSQLite},
	} {
		t.Run(o.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "shared.db")
			var stores [2]*store
			for i := range stores {
				db, err := o.open(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if stores[i], err = newStore(context.Background(), db); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { stores[i].close() })
			}
			var failures [2][]error
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					failures[i] = newUserLogins(s, fmt.Sprint("o", i), sharedFileLogins/2, sharedFileWorkers)
				}()
			}
			wg.Wait()
			if all := append(failures[0], failures[1]...); len(all) > 0 {
				t.Fatalf("%d of %d logins failed; first: %v", len(all), sharedFileLogins, all[0])
			}
			wantUserRows(t, stores[0].db, sharedFileLogins)
		})
	}
}

// envSharedFileChild, set to a SQLite file's path, makes this test binary
// the second process of TestTwoProcessesOneSQLiteFile.
const envSharedFileChild = "MPAUTHX_TEST_SHARED_SQLITE"

// TestTwoProcessesOneSQLiteFile is TestTwoStoresOneSQLiteFile with two
// processes, each with its own OpenSQLite *sql.DB: this test binary runs
// itself again as the second. Both start their logins together (the child
// waits for a line on its stdin) and every login must succeed.
func TestTwoProcessesOneSQLiteFile(t *testing.T) {
	if path := os.Getenv(envSharedFileChild); path != "" {
		sharedFileChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "shared.db")
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := newStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTwoProcessesOneSQLiteFile$", "-test.count=1")
	child.Env = append(os.Environ(), envSharedFileChild+"="+path)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !scanTo(lines, "ready") {
		child.Wait()
		t.Fatal("the child process did not get ready")
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	mine := newUserLogins(s, "parent", sharedFileLogins/2, sharedFileWorkers)
	var report string
	for lines.Scan() {
		if r, ok := strings.CutPrefix(lines.Text(), "child: "); ok {
			report = r
		}
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("child process: %v", err)
	}
	if len(mine) > 0 {
		t.Errorf("%d of this process's %d logins failed; first: %v", len(mine), sharedFileLogins/2, mine[0])
	}
	if report != "0 failures" {
		t.Errorf("the child process's %d logins: %q", sharedFileLogins/2, report)
	}
	wantUserRows(t, db, sharedFileLogins)
}

// sharedFileChild is the second process of TestTwoProcessesOneSQLiteFile:
// it opens path, says "ready", waits for a line on stdin, logs its users
// in and prints "child: N failures" (and the first).
func sharedFileChild(path string) {
	db, err := OpenSQLite(path)
	if err != nil {
		fmt.Println("child: open:", err)
		return
	}
	defer db.Close()
	s, err := newStore(context.Background(), db)
	if err != nil {
		fmt.Println("child: newStore:", err)
		return
	}
	defer s.close()
	fmt.Println("ready")
	if !scanTo(bufio.NewScanner(os.Stdin), "go") {
		fmt.Println("child: no go")
		return
	}
	failures := newUserLogins(s, "child", sharedFileLogins/2, sharedFileWorkers)
	if len(failures) == 0 {
		fmt.Println("child: 0 failures")
		return
	}
	fmt.Printf("child: %d failures; first: %v\n", len(failures), failures[0])
}

// scanTo reads lines until one is want, and reports whether it came.
func scanTo(sc *bufio.Scanner, want string) bool {
	for sc.Scan() {
		if sc.Text() == want {
			return true
		}
	}
	return false
}

// BenchmarkNewUserLoginsSharedFile measures new-user logins (the batch's
// read, then its write) on one SQLite file through one store, and through
// two stores (two *sql.DB, as two processes) taking turns: the second
// pays for batches that find the other store's commit and run again
// holding the write lock.
func BenchmarkNewUserLoginsSharedFile(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("stores=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "shared.db")
			stores := make([]*store, n)
			for i := range stores {
				db, err := OpenSQLite(path)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if stores[i], err = newStore(context.Background(), db); err != nil {
					b.Fatal(err)
				}
				defer stores[i].close()
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					openID := fmt.Sprint("o-", i)
					if _, err := stores[i%int64(n)].login(context.Background(), Identity{Platform: WeChatMiniProgram, OpenID: openID}, nil, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
