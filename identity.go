package mpauthx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"errors"
	"hash/fnv"
	"slices"
)

// The identity rules (docs/identities.md): a login finds its user by any
// of its identifiers — the identity (platform, app ID, openid), the
// unionid in its platform family's namespace, and the columns and IDs of
// the rows of earlier versions — and so does Link. No match: a new user;
// one user: that user, and what is new is recorded; two users: refused
// with StatusAccountConflict, nothing written. Users are never merged and
// a user's ID never changes.

// Link adds the identity of this Client's app to the existing user
// userID: code is a fresh login code of the app (wx.login's, tt.login's,
// my.getAuthCode's, or an OAuth callback's), exchanged as a login would
// exchange it. It is how a logged-in user binds another door to their
// account (WeChat on the website, say): from then on a login through this
// app, and through any app of its platform family that gives the same
// unionid, finds userID.
//
// Link trusts userID as RefreshToken does: call it with a user ID your
// server has authenticated (the Middleware's). It fails with
// StatusUserNotExist when userID has no row, and with
// StatusAccountConflict when the identity or its unionid already belongs
// to another user: the two are never merged (the person logs in with that
// other account, or you merge the accounts yourself). Linking an identity
// the user already has succeeds and changes nothing. The exchange fails as
// a login's does (StatusSessionKeyRequestError around the cause,
// StatusUnsupported where the platform has no login). Link logs nobody in:
// it issues no token and keeps no session key.
func (c *Client) Link(ctx context.Context, userID, code string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := checkUserID(userID); err != nil {
		return err
	}
	if err := required("code", code); err != nil {
		return err
	}
	// Before the exchange, which uses up the code.
	found, err := c.store.exists(ctx, userID)
	if err != nil {
		err = c.storageError(ctx, "looking the user up failed", err)
		c.logFailure(ctx, err)
		return err
	}
	if !found {
		return errUserNotExist()
	}
	s, err := c.exchange(ctx, code)
	if err != nil {
		c.logFailure(ctx, err)
		return err
	}
	if err := c.store.link(ctx, userID, c.identity(s.openID, s.unionID)); err != nil {
		err = c.storageError(ctx, "linking the identity failed", err)
		c.logFailure(ctx, err)
		return err
	}
	return nil
}

// errUserNotExist is the StatusUserNotExist error of a user ID without a
// row.
func errUserNotExist() *Error { return newError(StatusUserNotExist, "user does not exist", nil) }

// errConflict is the StatusAccountConflict error of a login or Link that
// would join two users.
func errConflict(msg string) *Error { return newError(StatusAccountConflict, msg, nil) }

// errNoOpenID fails a login whose platform gave no openid (a bug of the
// platform's exchange, which must refuse such a reply).
var errNoOpenID = errors.New("mpauthx: the identity has no openid")

// errNoUserRow fails a login whose user or identity row could be neither
// found nor created, which the serialised lookups rule out unless rows
// are being deleted at the same time.
var errNoUserRow = errors.New("mpauthx: the user row could not be created")

// loginReq is what a login brings: the identity, Authorize's profile (nil
// for none) and the phone number a platform verified ("" for none).
type loginReq struct {
	ident       Identity
	profile     *UserInfo
	phone       string
	linkByPhone bool

	// What the fast step read of the identity, and in which transaction
	// (nil: on the pool): the slow step reuses it in the same one.
	seen   identityRow
	seenOn *sql.Tx
}

// identityRow is an identity's row as qIdentity reads it.
type identityRow struct {
	found           bool
	userID, unionID string
}

// outcome is what a login or Link decided: the user's ID, or a refusal
// (StatusAccountConflict, StatusUserNotExist), with nothing written.
type outcome struct {
	userID  string
	refused *Error
}

// step decides and writes on o. A fast step reports done false when it
// cannot decide without the slow, serialised one.
type step func(ctx context.Context, o on) (out outcome, done bool, err error)

// login returns the user ID of the person logging in with ident (see
// gather), adding a user for a new person, and stores what the login
// brought: profile (Authorize's, nil for none) and phone (a number the
// platform verified; "" for none). It fails with a StatusAccountConflict
// *Error, having written nothing, when the identifiers (or, with
// LinkByPhone, the phone number) belong to two users.
//
// A returning login whose identity is recorded with the same unionid is
// one index lookup (plus its profile or phone). The others are
// serialised, so that concurrent first logins of one person through
// several apps make one user: on SQLite every login runs in the next
// group-committed batch (upsertBatcher), whose transactions run one at a
// time; on PostgreSQL, in a transaction holding advisory locks of its
// identifiers.
func (s *store) login(ctx context.Context, ident Identity, profile *UserInfo, phone string) (string, error) {
	ident = ident.normalized()
	if ident.OpenID == "" {
		return "", errNoOpenID
	}
	l := &loginReq{ident: ident, profile: profile, phone: phone, linkByPhone: s.linkByPhone}
	keys := func() []int64 {
		keys := identityLocks(ident)
		if l.linkByPhone && phone != "" {
			keys = append(keys, lockKey("phone", phone))
		}
		return keys
	}
	out, err := s.run(ctx, keys, l.returning, l.resolve)
	if err != nil {
		return "", err
	}
	if out.refused != nil {
		return "", out.refused
	}
	return out.userID, nil
}

// link records ident as an identity of the existing user userID: a
// StatusUserNotExist or StatusAccountConflict *Error when it cannot,
// with nothing written.
func (s *store) link(ctx context.Context, userID string, ident Identity) error {
	ident = ident.normalized()
	if ident.OpenID == "" {
		return errNoOpenID
	}
	fast := func(ctx context.Context, o on) (outcome, bool, error) {
		row, err := o.identity(ctx, ident)
		switch {
		case err != nil || !row.found:
			return outcome{}, false, err
		case row.userID != userID:
			return outcome{refused: errConflict("the identity belongs to another user")}, true, nil
		case ident.UnionID == "" || ident.UnionID == row.unionID:
			return outcome{userID: userID}, true, nil // linked already
		}
		return outcome{}, false, nil
	}
	slow := func(ctx context.Context, o on) (outcome, bool, error) {
		found, err := o.exists(ctx, userID)
		if err != nil {
			return outcome{}, false, err
		}
		if !found {
			return outcome{refused: errUserNotExist()}, true, nil
		}
		m, err := o.gather(ctx, ident, nil)
		if err != nil {
			return outcome{}, false, err
		}
		for _, u := range m.users {
			if u != userID {
				return outcome{refused: errConflict("the identity belongs to another user")}, true, nil
			}
		}
		if err := o.recordIdentity(ctx, ident, m, userID); err != nil {
			return outcome{}, false, err
		}
		return outcome{userID: userID}, true, nil
	}
	out, err := s.run(ctx, func() []int64 { return identityLocks(ident) }, fast, slow)
	if err != nil {
		return err
	}
	if out.refused != nil {
		return out.refused
	}
	return nil
}

// run runs fast and, when fast cannot decide, slow, serialised with every
// other slow step: on SQLite both run in the next group-committed batch,
// whose transactions run one at a time; on PostgreSQL fast runs on the
// pool and slow in a transaction holding the advisory locks keys()
// (called only then). A
// refusal is an outcome, not an error, so that it does not fail the
// batch's other logins.
func (s *store) run(ctx context.Context, keys func() []int64, fast, slow step) (outcome, error) {
	var out outcome
	work := func(ctx context.Context, o on) error {
		r, done, err := fast(ctx, o)
		if err != nil {
			return err
		}
		if !done {
			run := func(o on) error {
				var err error
				r, _, err = slow(ctx, o)
				return err
			}
			if o.tx != nil {
				err = run(o)
			} else {
				err = s.serialized(ctx, keys(), run)
			}
			if err != nil {
				return err
			}
		}
		out = r
		return nil
	}
	var err error
	if s.batch != nil {
		err = s.batch.do(ctx, func(ctx context.Context, tx *sql.Tx) error { return work(ctx, on{s: s, tx: tx}) })
	} else {
		err = work(ctx, on{s: s})
	}
	if err != nil {
		return outcome{}, err // out may still be written by a batch the caller left
	}
	return out, nil
}

// serialized runs f in a transaction of its own that first takes the
// transaction-level advisory locks keys (PostgreSQL), in ascending order
// so that two logins never wait for each other's. Each lock is its own
// statement: a statement's snapshot is taken before it runs, so f's
// statements, which follow, see what the previous holder committed.
func (s *store) serialized(ctx context.Context, keys []int64, f func(o on) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, k); err != nil {
			return err
		}
	}
	if err := f(on{s: s, tx: tx}); err != nil {
		return err
	}
	return tx.Commit()
}

// identityLocks are the advisory lock keys of ident's identifiers: the
// identity, and its unionid when known.
func identityLocks(ident Identity) []int64 {
	keys := []int64{lockKey("identity", string(ident.Platform), ident.AppID, ident.OpenID)}
	if ident.UnionID != "" {
		keys = append(keys, lockKey("unionid", ident.Platform.family(), ident.UnionID))
	}
	return keys
}

// lockKey is the advisory lock key of an identifier: FNV-1a (64 bits) of
// "mpauthx" and parts, each followed by a NUL. Two identifiers sharing a
// key only wait for each other.
func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mpauthx\x00"))
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// returning is the fast step of a login: the user of a recorded identity
// whose unionid the login does not change. A phone login with LinkByPhone
// always takes the slow step, which checks who else holds the phone.
func (l *loginReq) returning(ctx context.Context, o on) (outcome, bool, error) {
	row, err := o.identity(ctx, l.ident)
	if err != nil {
		return outcome{}, false, err
	}
	l.seen, l.seenOn = row, o.tx
	if !row.found || (l.ident.UnionID != "" && l.ident.UnionID != row.unionID) || (l.linkByPhone && l.phone != "") {
		return outcome{}, false, nil
	}
	if err := o.record(ctx, row.userID, l.profile, l.phone); err != nil {
		return outcome{}, false, err
	}
	return outcome{userID: row.userID}, true, nil
}

// resolve is the slow step of a login: the rules of this file, and, with
// LinkByPhone, the phone's.
func (l *loginReq) resolve(ctx context.Context, o on) (outcome, bool, error) {
	var seen *identityRow
	if o.tx != nil && o.tx == l.seenOn { // a SQLite batch: nothing changed since
		seen = &l.seen
	}
	m, err := o.gather(ctx, l.ident, seen)
	if err != nil {
		return outcome{}, false, err
	}
	if len(m.users) > 1 {
		return outcome{refused: errConflict("the login's identifiers belong to two users")}, true, nil
	}
	var userID string
	if len(m.users) == 1 {
		userID = m.users[0]
	}
	if l.linkByPhone && l.phone != "" {
		holders, err := o.strings(ctx, qByPhone, l.phone)
		if err != nil {
			return outcome{}, false, err
		}
		switch {
		case len(holders) > 1:
			return outcome{refused: errConflict("the phone number belongs to two users")}, true, nil
		case len(holders) == 1 && userID == "":
			userID = holders[0]
		case len(holders) == 1 && holders[0] != userID:
			return outcome{refused: errConflict("the phone number belongs to another user")}, true, nil
		}
	}
	profile, phone := l.profile, l.phone
	if userID == "" {
		if userID, err = o.createUser(ctx, l.ident, profile, phone); err != nil {
			return outcome{}, false, err
		}
		profile, phone = nil, "" // written with the row
	}
	if err := o.recordIdentity(ctx, l.ident, m, userID); err != nil {
		return outcome{}, false, err
	}
	if err := o.record(ctx, userID, profile, phone); err != nil {
		return outcome{}, false, err
	}
	return outcome{userID: userID}, true, nil
}

// matches is what gather found for an identity.
type matches struct {
	identity bool     // the identity is recorded
	unionID  string   // its recorded unionid, if so ("" for none)
	users    []string // the distinct users found, in the order found
}

// add adds userID to m.users unless it is there.
func (m *matches) add(userID string) {
	if !slices.Contains(m.users, userID) {
		m.users = append(m.users, userID)
	}
}

// gather finds the users of ident's identifiers: the user of the
// identity; the users holding its unionid in its family; and the user the
// columns of earlier versions give (qLegacy), for a WeChat identity. The
// last is found as earlier versions found it, the first of: the row whose
// wxOpenId is the openid; whose unionId is the unionid; whose ID is the
// unionid; whose ID is the openid (the Node.js original's rows, keyed by
// one or the other). It is one user at most, so that a table where the
// original split a person in two (keyed once by openid, once by unionid)
// logs them in as before, not with a conflict. Only a WeChat mini
// program's openid is looked for there, and only a WeChat unionid.
//
// seen, when not nil, is the identity's row as read already in the same
// transaction.
func (o on) gather(ctx context.Context, ident Identity, seen *identityRow) (matches, error) {
	var m matches
	if seen == nil {
		row, err := o.identity(ctx, ident)
		if err != nil {
			return m, err
		}
		seen = &row
	}
	if seen.found {
		m.identity, m.unionID = true, seen.unionID
		m.add(seen.userID)
	}
	if ident.UnionID != "" {
		users, err := o.strings(ctx, qByUnionID, ident.Platform.family(), ident.UnionID)
		if err != nil {
			return m, err
		}
		for _, u := range users {
			m.add(u)
		}
	}
	var openID, legacyUnionID any // NULL matches nothing
	if ident.Platform == WeChatMiniProgram {
		openID = ident.OpenID
	}
	if ident.UnionID != "" && ident.Platform.family() == WeChatMiniProgram.family() {
		legacyUnionID = ident.UnionID
	}
	if openID != nil || legacyUnionID != nil {
		var id sql.NullString
		if err := o.queryRow(ctx, qLegacy, openID, legacyUnionID).Scan(&id); err != nil {
			return m, err
		}
		if id.Valid {
			m.add(id.String)
		}
	}
	return m, nil
}

// identity returns ident's row: its user and recorded unionid.
func (o on) identity(ctx context.Context, ident Identity) (identityRow, error) {
	var r identityRow
	err := o.queryRow(ctx, qIdentity, string(ident.Platform), ident.AppID, ident.OpenID).Scan(&r.userID, &r.unionID)
	if errors.Is(err, sql.ErrNoRows) {
		return identityRow{}, nil
	}
	r.found = err == nil
	return r, err
}

// exists reports whether userID has a row.
func (o on) exists(ctx context.Context, userID string) (bool, error) {
	var one int
	err := o.queryRow(ctx, qExists, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// recordIdentity records ident as userID's, given what gather found: a
// new identity row, or the unionid an identity row lacks (or that the
// platform now gives instead of another).
func (o on) recordIdentity(ctx context.Context, ident Identity, m matches, userID string) error {
	if !m.identity {
		res, err := o.exec(ctx, qAddIdentity, string(ident.Platform), ident.AppID, ident.OpenID,
			ident.Platform.family(), ident.UnionID, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(errNoUserRow, err) // recorded meanwhile: not serialised
		}
		return nil
	}
	if ident.UnionID != "" && ident.UnionID != m.unionID {
		_, err := o.exec(ctx, qSetUnionID, ident.UnionID, string(ident.Platform), ident.AppID, ident.OpenID)
		return err
	}
	return nil
}

// record stores a login's profile (nil for none) and phone ("" for none)
// on userID's row.
func (o on) record(ctx context.Context, userID string, profile *UserInfo, phone string) error {
	if profile != nil {
		if _, err := o.exec(ctx, qUpsert, profileArgs(userID, profile)...); err != nil {
			return err
		}
	}
	if phone != "" {
		if _, err := o.exec(ctx, qPhone, phone, userID); err != nil {
			return err
		}
	}
	return nil
}

// createUser adds the row of a new user first seen with ident, with the
// login's profile and phone, and returns its ID: newUserID(ident), or,
// should a row hold that ID already (a user the lookups did not find,
// such as a row your application added), a random ID of the platform,
// never that row.
func (o on) createUser(ctx context.Context, ident Identity, profile *UserInfo, phone string) (string, error) {
	for _, id := range []string{newUserID(ident), randomUserID(ident.Platform)} {
		args := []any{id, nil, nil, nil, nil, nil, nil, phone}
		if profile != nil {
			copy(args, profileArgs(id, profile))
		}
		res, err := o.exec(ctx, qInsertUser, args...)
		if err != nil {
			return "", err
		}
		if n, err := res.RowsAffected(); err != nil {
			return "", err
		} else if n == 1 {
			return id, nil
		}
	}
	return "", errNoUserRow
}

// newUserID is the ID of a new user first seen with ident. A WeChat mini
// program's follows the Node.js original (the unionid when known, else
// the openid), so that its tables and tokens keep working. Another
// platform's is "<platform>:<openid>" ("douyin:...", "wechat-oa:..."):
// WeChat's IDs never contain ':', and the prefix differs per platform, so
// it collides with no other platform's user. An openid that would make it
// longer than a user ID may be (256 bytes) or unprintable gives
// "<platform>:" and the base32 of the first 20 bytes of SHA-256(app ID NUL
// openid) instead. No ID contains '|'.
func newUserID(ident Identity) string {
	if ident.Platform == WeChatMiniProgram {
		if ident.UnionID != "" {
			return ident.UnionID
		}
		return ident.OpenID
	}
	if id := string(ident.Platform) + ":" + ident.OpenID; validUserID(id) {
		return id
	}
	sum := sha256.Sum256([]byte(ident.AppID + "\x00" + ident.OpenID))
	return string(ident.Platform) + ":" + base32.StdEncoding.EncodeToString(sum[:20])
}

// randomUserID is a fresh user ID of platform p: "<platform>:" and 130
// random bits.
func randomUserID(p Platform) string { return string(p) + ":" + rand.Text() }

// normalized returns id with its Platform never "".
func (id Identity) normalized() Identity {
	id.Platform = id.Platform.normalize()
	return id
}

// strings runs the query q and returns its rows' one text column.
func (o on) strings(ctx context.Context, q query, args ...any) ([]string, error) {
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
