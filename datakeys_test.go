package mpauthx

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// newTestDataKey returns a fresh data key in base64, as an operator
// makes one with openssl rand -base64 32.
func newTestDataKey() string {
	return base64.StdEncoding.EncodeToString(randBytes(dataKeyLen))
}

// randBytes returns n bytes from crypto/rand.
func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// mustDataKeys parses keys and fails the test on error.
func mustDataKeys(t testing.TB, keys ...string) *dataKeys {
	t.Helper()
	d, err := parseDataKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseDataKeys(t *testing.T) {
	raw := randBytes(dataKeyLen)
	raw[0] = 0xfb // a '+' or '-' and a '/' or '_' in the encodings, whatever the rest
	raw[1] = 0xff
	t.Run("encodings", func(t *testing.T) {
		want := mustDataKeys(t, base64.StdEncoding.EncodeToString(raw)).keys[0].id
		for name, s := range map[string]string{
			"std":        base64.StdEncoding.EncodeToString(raw),
			"raw std":    base64.RawStdEncoding.EncodeToString(raw),
			"url":        base64.URLEncoding.EncodeToString(raw),
			"raw url":    base64.RawURLEncoding.EncodeToString(raw),
			"whitespace": " " + base64.StdEncoding.EncodeToString(raw) + "\n",
		} {
			d, err := parseDataKeys([]string{s})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := d.keys[0].id; got != want {
				t.Errorf("%s: key ID %q, want %q (the same key)", name, got, want)
			}
		}
	})
	t.Run("none", func(t *testing.T) {
		for _, in := range [][]string{nil, {}} {
			if d, err := parseDataKeys(in); d != nil || err != nil {
				t.Errorf("parseDataKeys(%q) = %v, %v; want nil, nil", in, d, err)
			}
		}
	})
	good := newTestDataKey()
	for name, bad := range map[string]string{
		"empty":        "",
		"not base64":   "this is not a key at all, but a long sentence!",
		"31 bytes":     base64.StdEncoding.EncodeToString(raw[:31]),
		"33 bytes":     base64.StdEncoding.EncodeToString(append(bytes.Clone(raw), 7)),
		"hex":          strings.Repeat("ab", 32),
		"all zero":     base64.StdEncoding.EncodeToString(make([]byte, dataKeyLen)),
		"repeated":     good,
		"repeated url": base64.URLEncoding.EncodeToString(mustDecode(t, good)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseDataKeys([]string{good, bad})
			if err == nil {
				t.Fatal("accepted")
			}
			var e *Error
			if errors.As(err, &e) {
				t.Errorf("a config mistake is a plain error, not %v", e)
			}
			msg := err.Error()
			if !strings.Contains(msg, "Config.DataKeys[1]") {
				t.Errorf("error %q does not name Config.DataKeys[1]", msg)
			}
			for _, k := range []string{good, bad} {
				if len(k) >= 8 && (strings.Contains(msg, k) || strings.Contains(msg, k[:8])) {
					t.Errorf("error %q quotes a key", msg)
				}
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNewRefusesBadDataKeys checks that New refuses a malformed data key
// with a plain error that names the field and does not quote the key.
func TestNewRefusesBadDataKeys(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	short := base64.StdEncoding.EncodeToString(randBytes(16))
	cfg := Config{AppID: "wx1", AppSecret: "sec", Sku: "s", DB: db, RedisAddr: "127.0.0.1:1",
		DataKeys: []string{newTestDataKey(), short}}
	c, err := New(cfg)
	if err == nil {
		c.Close()
		t.Fatal("New accepted a 16-byte data key")
	}
	if msg := err.Error(); !strings.Contains(msg, "Config.DataKeys[1]") || strings.Contains(msg, short) {
		t.Errorf("error %q: want it to name Config.DataKeys[1] without quoting the key", msg)
	}
	cfg.DataKeys = cfg.DataKeys[:1]
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestDataKeysSealOpen(t *testing.T) {
	k1, k2 := newTestDataKey(), newTestDataKey()
	d := mustDataKeys(t, k1)
	const phone = "13800138000"
	sealed := d.seal("user.phone", "o-alice", phone)
	if strings.Contains(sealed, phone) || strings.Contains(sealed, phone[3:]) {
		t.Fatalf("the sealed value %q holds the phone number", sealed)
	}
	if !isSealed(sealed) || isSealed(phone) || isSealed("+8613800138000") {
		t.Error("isSealed tells sealed values and phone numbers apart wrongly")
	}
	if again := d.seal("user.phone", "o-alice", phone); again == sealed {
		t.Error("sealing twice gives the same value: the nonce is not random")
	}
	if got, err := d.open("user.phone", "o-alice", sealed); err != nil || got != phone {
		t.Fatalf("open = %q, %v", got, err)
	}
	if got, err := d.open("user.phone", "o-alice", d.seal("user.phone", "o-alice", "")); err != nil || got != "" {
		t.Fatalf("open of an empty value = %q, %v", got, err)
	}

	t.Run("bound to its row and column", func(t *testing.T) {
		for _, at := range [][2]string{{"user.phone", "o-bob"}, {"user.nickName", "o-alice"}, {"user.phone", "o-alice\x00"}} {
			if _, err := d.open(at[0], at[1], sealed); !errors.Is(err, errSealedAltered) {
				t.Errorf("opened at %q: err %v, want errSealedAltered", at, err)
			}
		}
	})
	t.Run("altered", func(t *testing.T) {
		b := []byte(sealed)
		b[len(b)-3] ^= 1
		if b[len(b)-3] == '.' { // stay in the alphabet
			b[len(b)-3] = 'A'
		}
		if _, err := d.open("user.phone", "o-alice", string(b)); err == nil {
			t.Error("an altered value opened")
		}
	})
	t.Run("rotation", func(t *testing.T) {
		rotated := mustDataKeys(t, k2, k1)
		if got, err := rotated.open("user.phone", "o-alice", sealed); err != nil || got != phone {
			t.Fatalf("a value sealed under the old first key: open = %q, %v", got, err)
		}
		if rotated.sealedByFirst(sealed) || !d.sealedByFirst(sealed) {
			t.Error("sealedByFirst is wrong")
		}
		resealed := rotated.seal("user.phone", "o-alice", phone)
		if !rotated.sealedByFirst(resealed) {
			t.Error("a value sealed now is not by the first key")
		}
		if _, err := d.open("user.phone", "o-alice", resealed); !errors.Is(err, errSealedNoKey) {
			t.Errorf("opened without its key: err %v, want errSealedNoKey", err)
		}
		if got, err := mustDataKeys(t, k2).open("user.phone", "o-alice", resealed); err != nil || got != phone {
			t.Errorf("after the old key is dropped: open = %q, %v", got, err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, s := range []string{"", phone, "s1.", "s1.AAAAAAAA", "s1.AAAAAAAA.", "s1.AAAAAAAA.AAAA",
			"s1.AAAA*AAA." + dataB64.EncodeToString(make([]byte, 40)), "s1.AAAAAAAAx" + dataB64.EncodeToString(make([]byte, 40)),
			"s1.AAAAAAAA." + base64.StdEncoding.EncodeToString(make([]byte, 40))} {
			if _, err := d.open("user.phone", "o-alice", s); !errors.Is(err, errSealedMalformed) {
				t.Errorf("open(%q): err %v, want errSealedMalformed", s, err)
			}
		}
	})
}

func TestDataKeysIndex(t *testing.T) {
	k1, k2 := newTestDataKey(), newTestDataKey()
	d, rotated := mustDataKeys(t, k1), mustDataKeys(t, k2, k1)
	const phone = "13800138000"
	ix := d.index("user.phone", phone)
	if ix != d.index("user.phone", phone) {
		t.Fatal("the index is not deterministic")
	}
	if strings.Contains(ix, phone[3:]) {
		t.Fatalf("the index %q holds the phone number", ix)
	}
	if !strings.HasPrefix(ix, d.firstID()+".") {
		t.Errorf("the index %q does not start with its key's ID", ix)
	}
	if ix == d.index("user.phone", "13800138001") || ix == d.index("user.nickName", phone) {
		t.Error("different values or columns share an index")
	}
	if other := mustDataKeys(t, k2).index("user.phone", phone); other == ix {
		t.Error("two keys give the same index")
	}
	all := rotated.indexes("user.phone", phone)
	if len(all) != 2 || all[0] != rotated.index("user.phone", phone) || all[1] != ix {
		t.Errorf("indexes after rotation = %q: want the new key's, then the old one's %q", all, ix)
	}
}

// FuzzOpenSealed feeds arbitrary stored values to the parser of sealed
// values: it never panics, accepts only what seal made (no forgery opens)
// and every value seal makes opens.
func FuzzOpenSealed(f *testing.F) {
	d := mustDataKeys(f, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, dataKeyLen)))
	seed := d.seal("user.phone", "o-alice", "13800138000")
	f.Add(seed, "o-alice", "13800138000")
	f.Add("s1.AAAAAAAA."+dataB64.EncodeToString(make([]byte, 28)), "", "")
	f.Add("13800138000", "o", "+8613800138000")
	f.Add("s1.", "\x00", "\xff")
	f.Fuzz(func(t *testing.T, stored, rowID, plain string) {
		id, blob, err := parseSealed(stored)
		if err == nil && (len(id) != dataKeyIDLen || len(blob) < 28 || !isSealed(stored)) {
			t.Fatalf("parseSealed(%q) = %q, %d bytes: accepted a malformed value", stored, id, len(blob))
		}
		// Only the seed's sealed value opens, in its row: forging a GCM
		// tag by chance is not going to happen. (Each fuzzing process
		// seals its own seed, with a nonce of its own: the stored value
		// may be another process's.)
		if got, err := d.open("user.phone", rowID, stored); err == nil && (rowID != "o-alice" || got != "13800138000") {
			t.Fatalf("open(%q) in row %q = %q: a value seal did not make opened", stored, rowID, got)
		}
		sealed := d.seal("user.phone", rowID, plain)
		if got, err := d.open("user.phone", rowID, sealed); err != nil || got != plain {
			t.Fatalf("open(seal(%q)) = %q, %v", plain, got, err)
		}
		if _, err := d.open("user.phone", rowID+"x", sealed); err == nil {
			t.Fatal("a sealed value opened in another row")
		}
	})
}
