package mpauthx

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxBatch is the most profile upserts one SQLite transaction commits.
const maxBatch = 128

// errStoreClosed fails an upsert that Close overtook.
var errStoreClosed = errors.New("mpauthx: the user store is closed")

// upsertBatcher group-commits the statements of concurrent logins (see
// store.login) into one SQLite transaction each. SQLite lets one connection write at a
// time, and OpenSQLite's pool has one connection: with a statement per
// login, that connection sits idle between two logins while the next
// waiter is being scheduled, and every login pays a commit of its own. One
// goroutine running a transaction per batch keeps the connection busy and
// shares the commit.
//
// A login whose ctx ends before its batch starts is left out; one whose
// ctx ends later returns at once, and its row may still be written, which
// is harmless: WeChat has vouched for the user by then.
type upsertBatcher struct {
	db   *sql.DB
	reqs chan upsertReq

	// ctx bounds every batch's transaction; close cancels it, so that a
	// batch waiting for the pool's one connection (held by the caller's
	// own transaction, say) cannot hold close forever.
	ctx       context.Context
	cancel    context.CancelFunc
	quit      chan struct{} // closed by close: the loop stops
	stopped   chan struct{} // closed by the loop when it has stopped
	closeOnce sync.Once
}

// upsertReq is one login's statements, answered on done.
type upsertReq struct {
	ctx  context.Context
	run  func(ctx context.Context, tx *sql.Tx) error // on the batch's transaction; may run twice (see commit)
	done chan error                                  // buffered: the loop never waits for a caller
}

// newUpsertBatcher starts the loop that commits the batches.
func newUpsertBatcher(db *sql.DB) *upsertBatcher {
	b := &upsertBatcher{
		db:      db,
		reqs:    make(chan upsertReq, maxBatch),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.loop()
	return b
}

// do runs run on the next batch's transaction and returns its error, or
// ctx's error as soon as ctx ends. run may be called again, on a
// transaction of its own, when its batch failed (see commit).
func (b *upsertBatcher) do(ctx context.Context, run func(context.Context, *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := upsertReq{ctx: ctx, run: run, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.quit:
		return errStoreClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stopped: // the loop stopped after r was queued
		select {
		case err := <-r.done:
			return err
		default:
			return errStoreClosed
		}
	}
}

// close stops the loop, failing the upserts still queued, and waits for it.
func (b *upsertBatcher) close() {
	b.closeOnce.Do(func() {
		close(b.quit)
		b.cancel()
	})
	<-b.stopped
}

// loop commits batches until close.
func (b *upsertBatcher) loop() {
	defer close(b.stopped)
	batch := make([]upsertReq, 0, maxBatch)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.quit:
			for {
				select {
				case r := <-b.reqs:
					r.done <- errStoreClosed
				default:
					return
				}
			}
		}
		b.commit(drain(b.reqs, batch, maxBatch))
	}
}

// drain appends to batch what ch holds, without waiting, until batch
// holds max.
func drain[T any](ch <-chan T, batch []T, max int) []T {
	for len(batch) < max {
		select {
		case v := <-ch:
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}

// commit runs batch in one transaction and answers every request: the
// transaction's error, or the request's own ctx error when it was left
// out. A transaction fails as a whole: when it fails for a reason that
// may be one row's (a constraint of the caller's table), each request is
// retried in a transaction of its own, so that one bad row does not fail
// the others; a busy database or a closed store answers everyone.
func (b *upsertBatcher) commit(batch []upsertReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	err := b.run(live)
	if err != nil && b.ctx.Err() != nil {
		err = errStoreClosed
	}
	if err != nil && len(live) > 1 && !errors.Is(err, errStoreClosed) && !isBusy(err) {
		for _, r := range live {
			b.commit([]upsertReq{r})
		}
		return
	}
	for _, r := range live {
		r.done <- err
	}
}

// run executes the upserts of batch in one transaction. It is not tied to
// any caller's ctx (each caller waits on its own) but to b's, which close
// cancels; SQLite's busy timeout bounds how long it waits for the write
// lock.
//
// The transaction first begins as the *sql.DB's driver begins it:
// deferred, unless its DSN says _txlock=immediate. A batch of returning
// users only reads, and so never waits for the write lock while another
// connection holds it (WAL lets reads go on). A deferred transaction that
// has read and then writes is refused at once, without the busy timeout
// ("database is locked"), when another connection to the file (another
// process, another *sql.DB) committed in between: its snapshot is stale.
// The batch then runs again in a transaction that takes the write lock
// before it reads (see lockFirst), as BEGIN IMMEDIATE does, waiting up to
// the busy timeout; no commit can come between its read and its write.
func (b *upsertBatcher) run(batch []upsertReq) error {
	begun, err := b.runTx(batch, false)
	if begun && isBusy(err) && b.ctx.Err() == nil {
		_, err = b.runTx(batch, true)
	}
	return err
}

// lockFirst takes SQLite's write lock in a transaction that has not read
// yet, as BEGIN IMMEDIATE would: database/sql cannot send BEGIN IMMEDIATE
// (BeginTx asks the driver, which sends its DSN's BEGIN), but a write
// that changes no row takes the lock all the same, and waits for it up to
// the busy timeout since no snapshot is held yet. It works on any *sql.DB
// of go-sqlite3, the caller's own included.
const lockFirst = `UPDATE user SET openId = openId WHERE 0`

// runTx runs batch in one transaction, taking the write lock first when
// lock is true. begun reports whether the transaction began (a BEGIN that
// failed busy has already waited the busy timeout).
func (b *upsertBatcher) runTx(batch []upsertReq, lock bool) (begun bool, err error) {
	ctx := b.ctx
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	if lock {
		if _, err := tx.ExecContext(ctx, lockFirst); err != nil {
			return true, errors.Join(err, tx.Rollback())
		}
	}
	for _, r := range batch {
		if err := r.run(ctx, tx); err != nil {
			return true, errors.Join(err, tx.Rollback())
		}
	}
	return true, tx.Commit()
}
