package mpauthx

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Config.DataKeys: personal data sealed at rest in SQL.
//
// A data key is 32 random bytes. HKDF-SHA256 derives three things from
// each, and from nothing else (not the AppSecret, not the AppID, so that
// every app sharing the database opens the same values and an AppSecret
// reset loses nothing): its ID, 6 bytes written as 8 characters of
// base64url; a sealing key (AES-256-GCM, random 96-bit nonces); and an
// index key (HMAC-SHA256). A value is stored as
//
//	sealed: "s1." <key ID> "." base64url(nonce || ciphertext || tag)
//	index:  <key ID> "." base64url(HMAC(index key, column NUL value)[:16])
//
// The sealed value's associated data names its column and its row (the
// user ID): one copied to another row or column does not open. The index
// is a keyed blind index: it finds a row by the exact value without
// holding it, and without the key it cannot be recomputed from a guess
// (phone numbers are few enough to guess them all). It reveals which rows
// hold equal values, which an exact-match lookup needs.
//
// The first key seals and indexes; every key opens, and a lookup
// computes the index under every key (indexes), so that rows written
// under an older key are found until they are sealed again under the
// first: rotating keys loses nothing and logs nobody out.

// dataKeyLen is the length of a data key, decoded.
const dataKeyLen = 32

// HKDF info labels of what a data key derives.
const (
	dataKeyIDLabel    = "mpauthx data key id v1"
	dataKeySealLabel  = "mpauthx data seal v1"
	dataKeyIndexLabel = "mpauthx data index v1"
)

// sealedPrefix starts every sealed value: its format's version. A value
// without it was stored in clear (a phone number never starts so).
const sealedPrefix = "s1."

// dataKeyIDLen is the length of a key ID: 6 bytes in base64url.
const dataKeyIDLen = 8

// dataIndexLen is how many bytes of the HMAC an index keeps: 128 bits,
// far more than an exact-match lookup needs to tell values apart.
const dataIndexLen = 16

// dataB64 is the encoding of key IDs, sealed values and indexes: base64url
// without padding, which needs no quoting in SQL or logs.
var dataB64 = base64.RawURLEncoding

// The errors of dataKeys.open. None holds the value or a key.
var (
	errSealedMalformed = errors.New("mpauthx: a sealed value is malformed")
	errSealedNoKey     = errors.New("mpauthx: a sealed value's data key is not in Config.DataKeys")
	errSealedAltered   = errors.New("mpauthx: a sealed value does not open: altered, or moved to another row")
)

// dataKeys are Config.DataKeys, parsed. A nil *dataKeys means none:
// values are kept in clear.
type dataKeys struct {
	keys []*dataKey // keys[0] seals and indexes
}

// dataKey is one data key's derived keys.
type dataKey struct {
	id    string // dataKeyIDLen characters
	aead  cipher.AEAD
	index []byte // the HMAC key
}

// parseDataKeys parses Config.DataKeys: nil for none. Each is the base64
// (standard or URL alphabet, padded or not, white space around ignored)
// of 32 bytes. Its errors name the key by its position in the list and
// never quote it.
func parseDataKeys(in []string) (*dataKeys, error) {
	if len(in) == 0 {
		return nil, nil
	}
	d := &dataKeys{}
	seen := make(map[[dataKeyLen]byte]int, len(in))
	for i, s := range in {
		raw, ok := decodeDataKey(s)
		if !ok {
			return nil, fmt.Errorf("mpauthx: Config.DataKeys[%d] is not the base64 of %d bytes (make one with: openssl rand -base64 32)", i, dataKeyLen)
		}
		var k [dataKeyLen]byte
		copy(k[:], raw)
		if k == ([dataKeyLen]byte{}) {
			return nil, fmt.Errorf("mpauthx: Config.DataKeys[%d] is all zero bytes, not a random key", i)
		}
		if j, dup := seen[k]; dup {
			return nil, fmt.Errorf("mpauthx: Config.DataKeys[%d] repeats Config.DataKeys[%d]", i, j)
		}
		seen[k] = i
		d.keys = append(d.keys, newDataKey(raw))
	}
	return d, nil
}

// decodeDataKey decodes a key written in any of the base64 variants, and
// reports whether it is dataKeyLen bytes.
func decodeDataKey(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			return raw, len(raw) == dataKeyLen
		}
	}
	return nil, false
}

// newDataKey derives the keys of the data key raw.
func newDataKey(raw []byte) *dataKey {
	derive := func(label string, n int) []byte {
		k, err := hkdf.Key(sha256.New, raw, nil, label, n)
		if err != nil { // unreachable: far below HKDF-SHA256's limit
			panic("mpauthx: hkdf: " + err.Error())
		}
		return k
	}
	block, err := aes.NewCipher(derive(dataKeySealLabel, 32))
	if err != nil { // unreachable with a 32-byte key
		panic("mpauthx: aes: " + err.Error())
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil { // unreachable with AES
		panic("mpauthx: gcm: " + err.Error())
	}
	return &dataKey{
		id:    dataB64.EncodeToString(derive(dataKeyIDLabel, 6)),
		aead:  aead,
		index: derive(dataKeyIndexLabel, 32),
	}
}

// dataAD is the associated data of a value of column in the row rowID.
func dataAD(column, rowID string) []byte {
	return []byte("mpauthx data v1\x00" + column + "\x00" + rowID)
}

// seal returns plain sealed under the first key, bound to column and
// rowID.
func (d *dataKeys) seal(column, rowID, plain string) string {
	k := d.keys[0]
	blob := k.aead.Seal(nil, nil, []byte(plain), dataAD(column, rowID))
	return sealedPrefix + k.id + "." + dataB64.EncodeToString(blob)
}

// open returns the value sealed under column and rowID by any of the
// keys: errSealedMalformed for what seal did not make,
// errSealedNoKey when its key is not listed, errSealedAltered when it
// does not open.
func (d *dataKeys) open(column, rowID, sealed string) (string, error) {
	id, blob, err := parseSealed(sealed)
	if err != nil {
		return "", err
	}
	ad := dataAD(column, rowID)
	found := false
	for _, k := range d.keys {
		if k.id != id {
			continue
		}
		found = true // keep looking: two keys may share an ID (2^-48)
		if plain, err := k.aead.Open(nil, nil, blob, ad); err == nil {
			return string(plain), nil
		}
	}
	if !found {
		return "", errSealedNoKey
	}
	return "", errSealedAltered
}

// parseSealed splits a sealed value into its key ID and its sealed
// bytes (nonce, ciphertext and tag).
func parseSealed(s string) (keyID string, blob []byte, err error) {
	rest, ok := strings.CutPrefix(s, sealedPrefix)
	if !ok || len(rest) < dataKeyIDLen+1 || rest[dataKeyIDLen] != '.' {
		return "", nil, errSealedMalformed
	}
	keyID = rest[:dataKeyIDLen]
	if _, err := dataB64.DecodeString(keyID); err != nil {
		return "", nil, errSealedMalformed
	}
	blob, err = dataB64.Strict().DecodeString(rest[dataKeyIDLen+1:])
	if err != nil || len(blob) < 12+16 { // GCM's nonce and tag
		return "", nil, errSealedMalformed
	}
	return keyID, blob, nil
}

// isSealed reports whether a stored value is sealed (as opposed to a
// value kept in clear): it starts as seal's output does.
func isSealed(s string) bool { return strings.HasPrefix(s, sealedPrefix) }

// sealedByFirst reports whether the sealed value s is sealed under the
// first key, so that rotation need not seal it again.
func (d *dataKeys) sealedByFirst(s string) bool {
	id, _, err := parseSealed(s)
	return err == nil && id == d.keys[0].id
}

// index returns the blind index of value in column under the first key.
func (d *dataKeys) index(column, value string) string {
	return d.keys[0].indexOf(column, value)
}

// indexes returns the blind index of value in column under every key,
// the first key's first: a lookup matches any of them.
func (d *dataKeys) indexes(column, value string) []string {
	out := make([]string, len(d.keys))
	for i, k := range d.keys {
		out[i] = k.indexOf(column, value)
	}
	return out
}

// indexOf is the blind index of value in column under k.
func (k *dataKey) indexOf(column, value string) string {
	m := hmac.New(sha256.New, k.index)
	m.Write([]byte(column))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return k.id + "." + dataB64.EncodeToString(m.Sum(nil)[:dataIndexLen])
}

// firstID is the ID of the first key, which starts the indexes it
// makes: an index that does not start with firstID() + "." was made
// under another key.
func (d *dataKeys) firstID() string { return d.keys[0].id }

// phoneColumn names the phone number's column in its sealed values'
// associated data and in its index.
const phoneColumn = "user.phone"

// phoneValues returns the values of the user table's phone, phoneSealed
// and phoneIndex columns for userID's phone number: the number in phone
// without data keys, else sealed and indexed under the first key. Each
// is nil (NULL) when unused; all are nil for no number.
func (d *dataKeys) phoneValues(userID, phone string) (clear, sealed, index any) {
	switch {
	case phone == "":
		return nil, nil, nil
	case d == nil:
		return phone, nil, nil
	}
	return nil, d.seal(phoneColumn, userID, phone), d.index(phoneColumn, phone)
}

// readPhone returns userID's phone number from its stored columns: clear
// ("" for none), else sealed opened with the keys. A sealed number
// without keys, or that none of them opens, is an error.
func (d *dataKeys) readPhone(userID, clear, sealed string) (string, error) {
	switch {
	case clear != "" || sealed == "":
		return clear, nil
	case d == nil:
		return "", errSealedNoKey
	}
	return d.open(phoneColumn, userID, sealed)
}

// phoneIndexes returns the indexes a lookup of phone matches: one per
// key, none without keys.
func (d *dataKeys) phoneIndexes(phone string) []string {
	if d == nil {
		return nil
	}
	return d.indexes(phoneColumn, phone)
}

// The user table keeps a phone number in one of two ways: in clear in
// phone (without data keys, and in rows written before keys were given),
// or sealed in phoneSealed with its blind index in phoneIndex (phone then
// NULL). useDataKeys, run by New, seals the clear ones and those sealed
// under another key than the first.

// phoneSQL holds a dialect's statements of the sealing pass; $1… are
// written ? on SQLite.
type phoneSQL struct {
	byPhone   string // qByPhone's start; the indexes' IN list follows
	anySealed string // one row when a phone number is sealed
	clear     string // up to phonePassBatch rows with a clear phone number
	seal      string // seals a clear number, unless it changed
	stale     string // up to phonePassBatch rows indexed under another key, after a cursor
	reseal    string // seals again, unless it changed
	inList    func(first, n int) string
}

// phonePassBatch is how many rows one transaction of the pass changes.
const phonePassBatch = 256

var phoneStatements = map[string]phoneSQL{
	sqliteDialect.name: {
		byPhone:   `SELECT openId FROM user WHERE phone = ?`,
		anySealed: `SELECT 1 FROM user WHERE phoneIndex IS NOT NULL LIMIT 1`,
		clear:     `SELECT openId, phone FROM user WHERE phone IS NOT NULL LIMIT 256`,
		seal:      `UPDATE user SET phone = NULL, phoneSealed = ?, phoneIndex = ? WHERE openId = ? AND phone = ?`,
		stale: `SELECT openId, phoneSealed, phoneIndex FROM user WHERE phoneIndex > ? AND (phoneIndex < ? OR phoneIndex >= ?)
ORDER BY phoneIndex LIMIT 256`,
		reseal: `UPDATE user SET phoneSealed = ?, phoneIndex = ? WHERE openId = ? AND phoneSealed = ?`,
		inList: func(_, n int) string { return strings.Repeat("?, ", n-1) + "?" },
	},
	postgresDialect.name: {
		byPhone:   `SELECT "openId" FROM "user" WHERE "phone" = $1`,
		anySealed: `SELECT 1 FROM "user" WHERE "phoneIndex" IS NOT NULL LIMIT 1`,
		clear:     `SELECT "openId", "phone" FROM "user" WHERE "phone" IS NOT NULL LIMIT 256`,
		seal:      `UPDATE "user" SET "phone" = NULL, "phoneSealed" = $1, "phoneIndex" = $2 WHERE "openId" = $3 AND "phone" = $4`,
		stale: `SELECT "openId", "phoneSealed", "phoneIndex" FROM "user"
WHERE "phoneIndex" COLLATE "C" > $1 AND ("phoneIndex" COLLATE "C" < $2 OR "phoneIndex" COLLATE "C" >= $3)
ORDER BY "phoneIndex" COLLATE "C" LIMIT 256`,
		reseal: `UPDATE "user" SET "phoneSealed" = $1, "phoneIndex" = $2 WHERE "openId" = $3 AND "phoneSealed" = $4`,
		inList: func(first, n int) string {
			var b strings.Builder
			for i := range n {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "$%d", first+i)
			}
			return b.String()
		},
	},
}

// phoneLookupArgs are the arguments of qByPhone for phone: the number in
// clear, then its index under each key.
func (s *store) phoneLookupArgs(phone string) []any {
	args := []any{phone}
	for _, ix := range s.data.phoneIndexes(phone) {
		args = append(args, ix)
	}
	return args
}

// useDataKeys makes s seal phone numbers with d (nil: keep them in
// clear). With keys, a lookup by phone matches the number in clear or
// its index under any key, and the table's clear numbers, and those
// sealed under another key than the first, are sealed under the first at
// once (sealPhones). Without keys, a table that holds sealed numbers is
// refused: they could not be read or found.
func (s *store) useDataKeys(ctx context.Context, d *dataKeys, log *slog.Logger) error {
	sq := phoneStatements[s.d.name]
	if d == nil {
		var one int
		err := s.db.QueryRowContext(ctx, sq.anySealed).Scan(&one)
		if err == nil {
			return errors.New("mpauthx: the user table holds phone numbers sealed with Config.DataKeys, but Config.DataKeys is empty: give every instance the same keys (docs/operations.md, Personal data)")
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mpauthx: reading the user table: %w", err)
		}
		return nil
	}
	s.data = d
	s.d.q[qByPhone] = sq.byPhone + " OR " + quoteIf(s.d.name, "phoneIndex") + " IN (" + sq.inList(2, len(d.keys)) + ") LIMIT 2"
	if s.stmts[qByPhone] != nil {
		st, err := s.db.PrepareContext(ctx, s.d.q[qByPhone])
		if err != nil {
			return fmt.Errorf("mpauthx: preparing the user table's statements: %w", err)
		}
		s.stmts[qByPhone].Close()
		s.stmts[qByPhone] = st
	}
	s.sealPhones(ctx, log)
	return nil
}

// quoteIf quotes a column name for PostgreSQL.
func quoteIf(dialectName, column string) string {
	if dialectName == postgresDialect.name {
		return `"` + column + `"`
	}
	return column
}

// sealPhones seals the table's clear phone numbers, and seals again
// those sealed under another key than the first, in transactions of up
// to phonePassBatch rows; each update applies only if the row still
// holds what was read, so instances running it at once, and logins
// meanwhile, lose nothing. On SQLite its transactions zero what they
// overwrite (secure_delete) and a checkpoint ends it, so that the file
// and its WAL keep no clear number. A failure is logged; the next New
// takes the pass up again.
func (s *store) sealPhones(ctx context.Context, log *slog.Logger) {
	sq := phoneStatements[s.d.name]
	d := s.data
	sealed, resealed, unopened := 0, 0, 0
	type row struct{ id, value, index string }
	batch := func(q string, args []any, change func(tx *sql.Tx, r row) error) (rows []row, err error) {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback() // a no-op after Commit
		if s.d.oneWriter {
			if _, err := tx.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
				return nil, err
			}
		}
		rs, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var r row
			dest := []any{&r.id, &r.value, &r.index}
			if n, _ := rs.Columns(); len(n) < len(dest) {
				dest = dest[:len(n)]
			}
			if err := rs.Scan(dest...); err != nil {
				rs.Close()
				return nil, err
			}
			rows = append(rows, r)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return nil, err
		}
		for _, r := range rows {
			if err := change(tx, r); err != nil {
				return nil, err
			}
		}
		return rows, tx.Commit()
	}
	fail := func(err error) {
		log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: sealing the stored phone numbers with Config.DataKeys failed; the next New goes on", slog.String("error", err.Error()))
	}
	for {
		n := 0
		rows, err := batch(sq.clear, nil, func(tx *sql.Tx, r row) error {
			res, err := tx.ExecContext(ctx, sq.seal, d.seal(phoneColumn, r.id, r.value), d.index(phoneColumn, r.value), r.id, r.value)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += int(k)
			return nil
		})
		if err != nil {
			fail(err)
			return
		}
		sealed += n
		if len(rows) < phonePassBatch || n == 0 {
			break
		}
	}
	first := d.firstID() + "."
	after := first[:len(first)-1] + "/" // the first string past every index of the first key
	cursor := ""
	for {
		n := 0
		rows, err := batch(sq.stale, []any{cursor, first, after}, func(tx *sql.Tx, r row) error {
			phone, err := d.open(phoneColumn, r.id, r.value)
			if err != nil {
				unopened++
				return nil
			}
			res, err := tx.ExecContext(ctx, sq.reseal, d.seal(phoneColumn, r.id, phone), d.index(phoneColumn, phone), r.id, r.value)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += int(k)
			return nil
		})
		if err != nil {
			fail(err)
			return
		}
		resealed += n
		if len(rows) < phonePassBatch {
			break
		}
		cursor = rows[len(rows)-1].index
	}
	if s.d.oneWriter && sealed+resealed > 0 {
		if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			fail(err)
			return
		}
	}
	if sealed+resealed > 0 {
		log.LogAttrs(ctx, slog.LevelInfo, "mpauthx: sealed the stored phone numbers under the first of Config.DataKeys",
			slog.Int("sealed", sealed), slog.Int("resealed", resealed))
	}
	if unopened > 0 {
		log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: some stored phone numbers are sealed under a key that is not in Config.DataKeys: they cannot be read or found until it is given back",
			slog.Int("rows", unopened))
	}
}
