package mpauthx

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Deleting a user (DeleteUser) must end their tokens of every Sku that
// shares the Redis, not only this Client's, and Redis keys are per user
// and Sku. Finding them with KEYS or SCAN would cost time in proportion
// to every key in Redis, so the Skus register themselves instead, in
//
//	mpauthx:skus  ->  set of the Skus whose tokens this Redis holds (no TTL)
//
// Each Client adds its Sku before it stores its first token, and again
// at most every skuRegisterEvery while it stores tokens (which puts the
// set back after an operator's DEL, or an eviction under an allkeys
// maxmemory-policy), so DeleteUser costs one SMEMBERS and one DEL per
// Sku, whatever the number of users and tokens.

// skuRegistryKey is the set of the Skus that store tokens in this Redis.
const skuRegistryKey = keyPrefix + "skus"

// skuRegisterEvery is how often a Client storing tokens adds its Sku to
// the registry again.
const skuRegisterEvery = time.Minute

// userKeySuffixes end the Redis keys of a user and Sku,
// mpauthx:{<userID>|<sku>}:<suffix>: the session, the hash of the sealed
// session keys, and the sealed session key of versions before session
// keys were kept per app (which an instance not yet upgraded may write).
var userKeySuffixes = []string{"session", "sks", "sk"}

// skuRegistry is a Client's registration of its Sku.
type skuRegistry struct {
	mu     sync.Mutex   // held by the registering call
	at     atomic.Int64 // time.Now().UnixNano() of the last registration; 0: none yet
	warned atomic.Bool  // the refusal by an ACL was logged
}

// registerSku adds c's Sku to the registry before c stores a token: the
// first call of a Client waits for it (and fails when Redis does), later
// ones register again every skuRegisterEvery, one at a time, without
// making the others wait. A Redis user whose ACL denies SADD does not
// stop logins: it is logged once, and DeleteUser then reaches this Sku
// only from a Client of this Sku.
func (c *Client) registerSku(ctx context.Context) error {
	last := c.skus.at.Load()
	if last != 0 && time.Since(time.Unix(0, last)) < skuRegisterEvery {
		return nil
	}
	if last == 0 {
		c.skus.mu.Lock()
	} else if !c.skus.mu.TryLock() {
		return nil // another call is registering; this Sku is registered already
	}
	defer c.skus.mu.Unlock()
	if at := c.skus.at.Load(); at != last {
		return nil // registered while this call waited
	}
	err := await(ctx, func() error { return c.rdb.SAdd(ctx, skuRegistryKey, c.sku).Err() })
	if err != nil && redis.HasErrorPrefix(err, "NOPERM") {
		if !c.skus.warned.Swap(true) {
			c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: the Redis ACL denies SADD on "+skuRegistryKey+": DeleteUser from a Client of another Sku will not end this Sku's tokens (docs/operations.md, Redis ACL)")
		}
		err = nil
	}
	if err != nil {
		return err
	}
	c.skus.at.Store(time.Now().UnixNano())
	return nil
}

// deleteTokens ends userID's tokens and session keys of every registered
// Sku and of c's: one SMEMBERS, then one DEL per Sku (one per key for a
// user ID whose keys have no hash tag), pipelined; on a Cluster each DEL
// goes to its key's node. c forgets its cached entry at once; the
// others' LocalCache hear of the DEL from Redis.
func (c *Client) deleteTokens(ctx context.Context, userID string) error {
	var skus []string
	err := await(ctx, func() (err error) {
		skus, err = c.rdb.SMembers(ctx, skuRegistryKey).Result()
		return err
	})
	if err != nil {
		return err
	}
	if !slices.Contains(skus, c.sku) {
		skus = append(skus, c.sku)
	}
	tagged := !strings.HasPrefix(userID, "}") // see userKeys
	err = await(ctx, func() error {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, sku := range skus {
				keys := make([]string, 0, len(userKeySuffixes))
				for _, suffix := range userKeySuffixes {
					keys = append(keys, keyPrefix+"{"+userID+"|"+sku+"}:"+suffix)
				}
				if tagged {
					p.Del(ctx, keys...)
					continue
				}
				for _, k := range keys {
					p.Del(ctx, k)
				}
			}
			return nil
		})
		return err
	})
	c.cache.forget(userID) // as RevokeToken does: the DEL may have run even on error
	return err
}

// settleCaches waits until no LocalCache, of any instance, can still
// answer from before a write that Redis has executed: a cache answers
// only until cacheLease after sending a PING whose PONG it has read, and
// a PING sent after the write is answered after the write's invalidation.
func settleCaches(ctx context.Context) error {
	t := time.NewTimer(cacheLease)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteUserSQL deletes a user's identities and row, by dialect name.
var deleteUserSQL = map[string][]string{
	sqliteDialect.name:   {`DELETE FROM user_identity WHERE userId = ?`, `DELETE FROM user WHERE openId = ?`},
	postgresDialect.name: {`DELETE FROM "user_identity" WHERE "userId" = $1`, `DELETE FROM "user" WHERE "openId" = $1`},
}

// deleteUser deletes userID's identities and row (profile and phone
// number) in one transaction. On SQLite the transaction's connection has
// secure_delete on, so the deleted content is zeroed, and a checkpoint
// then copies the pages to the database file and truncates the WAL, which
// held the earlier versions of the pages: neither file keeps the user's
// identifiers or phone number. A checkpoint that another connection's
// open read holds up is logged; the next checkpoint completes it.
func (s *store) deleteUser(ctx context.Context, userID string, log *slog.Logger) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if s.d.oneWriter {
		if _, err := tx.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
			return err
		}
	}
	for _, q := range deleteUserSQL[s.d.name] {
		if _, err := tx.ExecContext(ctx, q, userID); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if !s.d.oneWriter {
		return nil
	}
	var busy, frames, done int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return err
	}
	if busy != 0 {
		log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: DeleteUser: another connection's read held up the WAL checkpoint; the WAL file keeps the deleted data until the next checkpoint")
	}
	return nil
}

// DeleteUser deletes the user userID: their row (profile and phone
// number) and identities, and their tokens and session keys of every Sku
// whose Clients share this Redis. Once it returns, no token of theirs
// validates on any instance, LocalCache included: it waits 50 ms, the
// caches' lease, for that. On SQLite the file and its WAL keep no trace
// of the user (docs/operations.md, "Personal data"). It is idempotent:
// deleting a user who is not there is no error. A later login of the
// same person makes a new user. Like RefreshToken, it trusts its caller
// with userID; delete your own tables' rows of the user yourself.
func (c *Client) DeleteUser(ctx context.Context, userID string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := checkUserID(userID); err != nil {
		return err
	}
	if err := c.store.deleteUser(ctx, userID, c.log); err != nil {
		err = c.storageError(ctx, "deleting the user failed", err)
		c.logFailure(ctx, err)
		return err
	}
	if err := c.deleteTokens(ctx, userID); err != nil {
		err = c.storageError(ctx, "deleting the user's tokens failed", err)
		c.logFailure(ctx, err)
		return err
	}
	if err := settleCaches(ctx); err != nil {
		err = c.storageError(ctx, "waiting for the local caches failed", err)
		c.logFailure(ctx, err)
		return err
	}
	return nil
}
