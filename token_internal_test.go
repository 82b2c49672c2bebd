package mpauthx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSplitToken(t *testing.T) {
	tests := []struct {
		token                string
		userID, sku, session string
		ok                   bool
	}{
		{"oABC|sku|SESSION", "oABC", "sku", "SESSION", true},
		{"a|b|c", "a", "b", "c", true},
		{"||", "", "", "", true},
		{"|sku|s", "", "sku", "s", true},
		{"u||s", "u", "", "s", true},
		{"u|sku|", "u", "sku", "", true},
		{"中文|商品|会话", "中文", "商品", "会话", true},
		{"", "", "", "", false},
		{"abc", "", "", "", false},
		{"|", "", "", "", false},
		{"u|sku", "", "", "", false},
		{"a|b|c|d", "", "", "", false},
		{"a|b|c|", "", "", "", false},
		{"|||", "", "", "", false},
		{"a|b||c", "", "", "", false},
	}
	for _, tt := range tests {
		u, k, s, ok := splitToken(tt.token)
		if u != tt.userID || k != tt.sku || s != tt.session || ok != tt.ok {
			t.Errorf("splitToken(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
				tt.token, u, k, s, ok, tt.userID, tt.sku, tt.session, tt.ok)
		}
	}
}

func TestSplitTokenExtract(t *testing.T) {
	c := &Client{sku: "sku"}
	tests := []struct {
		token, openID, sku string
	}{
		{"oABC|sku|SESSION", "oABC", "sku"},
		{"oABC|other|SESSION", "oABC", "other"},
		{"oABC|sku", "oABC", ""},
		{"oABC|sku|S|x", "oABC", ""},
		{"oABC", "", ""},
		{"", "", ""},
		{"|sku|S", "", "sku"},
	}
	for _, tt := range tests {
		if got := c.ExtractOpenID(tt.token); got != tt.openID {
			t.Errorf("ExtractOpenID(%q) = %q, want %q", tt.token, got, tt.openID)
		}
		if got := c.ExtractSku(tt.token); got != tt.sku {
			t.Errorf("ExtractSku(%q) = %q, want %q", tt.token, got, tt.sku)
		}
	}
}

// TestSplitTokenParse checks Client.parse: only well-formed tokens of the
// Client's own Sku get through.
func TestSplitTokenParse(t *testing.T) {
	c := &Client{sku: "sku"}
	s := newSession()
	tests := []struct {
		token string
		ok    bool
	}{
		{"oABC|sku|" + s, true},
		{c.makeToken("o'%_", s), true},
		{"oABC|other|" + s, false},
		{"oABC|SKU|" + s, false},
		{"|sku|" + s, false},
		{"oABC|sku|" + strings.ToLower(s), false},
		{"oABC|sku|" + s[:25], false},
		{"oABC|sku|" + s + "A", false},
		{"oABC|sku|" + s + "|", false},
		{"o\x00|sku|" + s, false},
		{strings.Repeat("o", 257) + "|sku|" + s, false},
		{"oABC|sku", false},
		{"", false},
	}
	for _, tt := range tests {
		u, sess, ok := c.parse(tt.token)
		if ok != tt.ok {
			t.Errorf("parse(%q) ok = %v, want %v", tt.token, ok, tt.ok)
			continue
		}
		if ok && (u != c.ExtractOpenID(tt.token) || c.makeToken(u, sess) != tt.token) {
			t.Errorf("parse(%q) = %q, %q: does not rebuild the token", tt.token, u, sess)
		}
		if !ok && (u != "" || sess != "") {
			t.Errorf("parse(%q) = %q, %q with ok false", tt.token, u, sess)
		}
	}
}

func TestValidUserID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"oGZUI0egBJY1zhBYw2KhdUfwVJJE", true},
		{"ocMvos6NjeKLIBqg5Mr9QjxrP1FA", true},
		{"o-_AZaz09", true},
		{"o'%_\"\\;--", true},
		{"a b", true},
		{"中文用户", true},
		{"x", true},
		{strings.Repeat("o", maxUserIDLen), true},
		{strings.Repeat("中", maxUserIDLen/3), true}, // 255 bytes
		{"", false},
		{strings.Repeat("o", maxUserIDLen+1), false},
		{strings.Repeat("中", maxUserIDLen/3+1), false}, // 258 bytes
		{"a|b", false},
		{"|", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\rb", false},
		{"\x1f", false},
		{"a\x7fb", false},
		{"\xff", false},
		{"a\xc3", false},
		{"\xed\xa0\x80", false}, // an encoded surrogate is not UTF-8
		{" a", false},
		{"a ", false},
		{" ", false},
		{"a\u00a0", false},  // a trailing no-break space
		{"a\u200bb", false}, // a zero-width space is not printable
		{"a\u202eb", false}, // nor a bidi override
		{"a\u0085b", false}, // nor a C1 control (NEL)
		{"a\u3000b", false}, // nor an ideographic space
	}
	for _, tt := range tests {
		if got := validUserID(tt.id); got != tt.ok {
			t.Errorf("validUserID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}

func TestValidSession(t *testing.T) {
	tests := []struct {
		s  string
		ok bool
	}{
		{strings.Repeat("A", sessionLen), true},
		{strings.Repeat("Z", sessionLen), true},
		{strings.Repeat("2", sessionLen), true},
		{strings.Repeat("7", sessionLen), true},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", true},
		{"", false},
		{strings.Repeat("A", sessionLen-1), false},
		{strings.Repeat("A", sessionLen+1), false},
		{strings.Repeat("a", sessionLen), false},
		{strings.Repeat("A", sessionLen-1) + "1", false},
		{strings.Repeat("A", sessionLen-1) + "8", false},
		{strings.Repeat("A", sessionLen-1) + "0", false},
		{strings.Repeat("A", sessionLen-1) + "=", false},
		{strings.Repeat("A", sessionLen-1) + "|", false},
		{strings.Repeat("A", sessionLen-1) + " ", false},
		{"Ä" + strings.Repeat("A", sessionLen-2), false}, // 26 bytes, not 26 letters
	}
	for _, tt := range tests {
		if got := validSession(tt.s); got != tt.ok {
			t.Errorf("validSession(%q) = %v, want %v", tt.s, got, tt.ok)
		}
	}
}

func TestNewSession(t *testing.T) {
	const n = 1000
	if sessionLen != 26 {
		t.Fatalf("sessionLen = %d, want 26", sessionLen)
	}
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		s := newSession()
		if len(s) != 26 {
			t.Fatalf("newSession() = %q: %d chars, want 26", s, len(s))
		}
		for _, r := range s {
			if (r < 'A' || r > 'Z') && (r < '2' || r > '7') {
				t.Fatalf("newSession() = %q: %q is not base32", s, r)
			}
		}
		if !validSession(s) {
			t.Fatalf("validSession(newSession() = %q) = false", s)
		}
		if seen[s] {
			t.Fatalf("newSession() repeated %q after %d calls", s, i)
		}
		seen[s] = true
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		h     string
		token string
		ok    bool
	}{
		{"Bearer x", "x", true},
		{"bearer x", "x", true},
		{"BEARER  x ", "x", true},
		{"BeArEr x", "x", true},
		{"  Bearer x  ", "x", true},
		{"\tBearer x\t", "x", true},
		{"Bearer \tx\t", "x", true},
		{"Bearer oABC|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ", "oABC|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ", true},
		{"Bearer x y", "x y", true},
		{"", "", false},
		{" ", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer  ", "", false},
		{"Bearer \t ", "", false},
		{"Bearerx", "", false},
		{"Bearer\tx", "", false}, // the scheme ends with a space (RFC 7235), as in net/http's Basic auth
		{"Bearer\u00a0x", "", false},
		{"Basic x", "", false},
		{"Basic Bearer x", "", false},
		{"Bearer: x", "", false},
		{"Token x", "", false},
		{"x", "", false},
		{" x", "", false},
	}
	for _, tt := range tests {
		token, ok := bearerToken(tt.h)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.h, token, ok, tt.token, tt.ok)
		}
	}
}

func TestStorageErrorWrapsEndedContext(t *testing.T) {
	ioTimeout := errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout")
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	tests := []struct {
		name  string
		ctx   context.Context
		cause error
		want  error // also wrapped; nil: only the cause
	}{
		{"live ctx", context.Background(), ioTimeout, nil},
		{"expired ctx, socket timeout", expired, ioTimeout, context.DeadlineExceeded},
		{"canceled ctx, socket error", canceled, ioTimeout, context.Canceled},
		{"expired ctx, cause already says so", expired, fmt.Errorf("get: %w", context.DeadlineExceeded), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := new(Client).storageError(tt.ctx, "checking the token failed", tt.cause)
			if err.Code != StatusDatabaseError || !errors.Is(err, tt.cause) {
				t.Fatalf("storageError = %v (code %d), want 6000 wrapping %v", err, err.Code, tt.cause)
			}
			if tt.want == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
				t.Fatalf("storageError = %v wraps a ctx error of a live ctx", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("storageError = %v does not wrap %v", err, tt.want)
			}
			if tt.want != nil {
				if n := strings.Count(err.Error(), tt.want.Error()); n != 1 {
					t.Fatalf("storageError = %q names %q %d times", err, tt.want, n)
				}
			}
		})
	}
}

func TestStorageErrorAfterClose(t *testing.T) {
	var c Client
	if err := c.storageError(context.Background(), "checking the token failed", redis.ErrClosed); err.Code != StatusDatabaseError {
		t.Fatalf("open client: storageError(redis.ErrClosed) = %v, want 6000", err)
	}
	c.closed.Store(true)
	for _, cause := range []error{fmt.Errorf("get: %w", redis.ErrClosed), errStoreClosed, errBatcherClosed, errors.New("sql: statement is closed")} {
		err := c.storageError(context.Background(), "checking the token failed", cause)
		if err.Code != StatusUnknownError || !errors.Is(err, ErrClosed) {
			t.Errorf("closed client: storageError(%v) = %v, want 9999 wrapping ErrClosed", cause, err)
		}
	}
	// A call whose ctx ended reports that, closed client or not.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.storageError(ctx, "checking the token failed", redis.ErrClosed); err.Code != StatusDatabaseError || !errors.Is(err, context.Canceled) {
		t.Fatalf("closed client, cancelled ctx: storageError = %v, want 6000 wrapping context.Canceled", err)
	}
}
