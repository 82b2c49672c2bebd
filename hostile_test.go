package mpauthx_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// Hostile input: values a caller, a mini program or WeChat itself can put
// in front of the library, far outside what honest ones send. Every case
// pins the exact status code and checks that nothing was stored.

const mib = 1 << 20

// serveMiddleware sends a request with the Authorization header h through
// c's Middleware and returns the reply; next must not be reached.
func serveMiddleware(t *testing.T, c *mpauthx.Client, h string) *httptest.ResponseRecorder {
	t.Helper()
	return serveAuth(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the Middleware let a hostile token through")
	})), h)
}

// TestHostileTokens hands huge and binary tokens to every method that takes
// one: no error, no panic, nothing stored or revoked, and the Middleware
// answers 401 with 6007 without echoing them.
func TestHostileTokens(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("hostile")
		token := e.login(t, u)
		sess := token[strings.LastIndexByte(token, '|')+1:]
		sku := e.cfg.Sku
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		noise := make([]byte, mib)
		rand.Read(noise)
		noise = bytes.ReplaceAll(noise, []byte("|"), []byte("x"))
		tests := []struct {
			name, token  string
			openID, sku  string // what ExtractOpenID and ExtractSku return
			skipMWHeader bool   // the Middleware trims the header: it would check another token
		}{
			{name: "1 MiB without bar", token: strings.Repeat("x", mib)},
			{name: "1 MiB of bars", token: strings.Repeat("|", mib)},
			{name: "1 MiB of random bytes", token: string(noise)},
			{name: "1 MiB user ID", token: strings.Repeat("o", mib) + "|" + sku + "|" + sess, openID: strings.Repeat("o", mib), sku: sku},
			{name: "1 MiB sku", token: u.OpenID + "|" + strings.Repeat("s", mib) + "|" + sess, openID: u.OpenID, sku: strings.Repeat("s", mib)},
			{name: "1 MiB session", token: u.OpenID + "|" + sku + "|" + strings.Repeat("A", mib), openID: u.OpenID, sku: sku},
			{name: "1 MiB after the token", token: token + strings.Repeat("A", mib), openID: u.OpenID, sku: sku},
			{name: "1 MiB of parts", token: u.OpenID + "|" + sku + "|" + sess + strings.Repeat("|", mib), openID: u.OpenID},
			{name: "257-byte user ID", token: strings.Repeat("o", 257) + "|" + sku + "|" + sess, openID: strings.Repeat("o", 257), sku: sku},
			{name: "every byte value", token: string(all), openID: string(all[:'|'])},
			{name: "NUL in user ID", token: u.OpenID + "\x00|" + sku + "|" + sess, openID: u.OpenID + "\x00", sku: sku},
			{name: "NUL after token", token: token + "\x00", openID: u.OpenID, sku: sku},
			{name: "CRLF in user ID", token: u.OpenID + "\r\n|" + sku + "|" + sess, openID: u.OpenID + "\r\n", sku: sku},
			{name: "invalid UTF-8 user ID", token: "\xc3\x28|" + sku + "|" + sess, openID: "\xc3\x28", sku: sku},
			{name: "binary session", token: u.OpenID + "|" + sku + "|" + string(all[200:226]), openID: u.OpenID, sku: sku},
			{name: "NUL session", token: u.OpenID + "|" + sku + "|" + strings.Repeat("\x00", 26), openID: u.OpenID, sku: sku},
			{name: "session with bar", token: u.OpenID + "|" + sku + "|" + sess[:13] + "|" + sess[14:], openID: u.OpenID},
			{name: "session of another user", token: "o-other|" + sku + "|" + sess, openID: "o-other", sku: sku},
			{name: "glob user ID", token: "*|" + sku + "|" + sess, openID: "*", sku: sku},
			{name: "glob sku", token: u.OpenID + "|*|" + sess, openID: u.OpenID, sku: "*"},
			{name: "hash tag braces", token: "}{|" + sku + "|" + sess, openID: "}{", sku: sku},
			{name: "256-byte user ID", token: strings.Repeat("o", 256) + "|" + sku + "|" + sess, openID: strings.Repeat("o", 256), sku: sku},
			{name: "leading space", token: " " + token, openID: " " + u.OpenID, sku: sku, skipMWHeader: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := e.c.ExtractOpenID(tt.token); got != tt.openID {
					t.Errorf("ExtractOpenID = %.40q, want %.40q", got, tt.openID)
				}
				if got := e.c.ExtractSku(tt.token); got != tt.sku {
					t.Errorf("ExtractSku = %.40q, want %.40q", got, tt.sku)
				}
				ok, err := e.c.IsTokenValid(bg, tt.token)
				if ok || err != nil {
					t.Fatalf("IsTokenValid = %v, %v; want false, nil", ok, err)
				}
				if err := e.c.RevokeToken(bg, tt.token); err != nil {
					t.Fatalf("RevokeToken = %v, want nil", err)
				}
				if tt.skipMWHeader {
					return
				}
				rec := serveMiddleware(t, e.c, "Bearer "+tt.token)
				var res mpauthx.Result
				if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != http.StatusUnauthorized || res.StatusCode != mpauthx.StatusInvalidAccessToken {
					t.Fatalf("Middleware: HTTP %d, %.100q (%v); want 401 with 6007", rec.Code, rec.Body, err)
				}
				if rec.Body.Len() > 200 {
					t.Fatalf("Middleware reply is %d bytes: it echoes the token", rec.Body.Len())
				}
			})
		}
		if !e.valid(t, token) {
			t.Fatal("the real token was revoked by a hostile one")
		}
		if keys := e.skuKeys(t); !slices.Equal(keys, []string{e.key(u.OpenID)}) {
			t.Fatalf("keys = %.200q, want only the real user's", keys)
		}
	})
}

// TestHostileCodes sends codes full of URL syntax: each reaches WeChat as
// exactly one js_code, byte for byte, and adds no query parameter.
func TestHostileCodes(t *testing.T) {
	codes := []string{
		"a&secret=evil",
		"a&appid=wx-evil&js_code=other&grant_type=client_credentials",
		"code#fragment",
		"#",
		"a=b==",
		"%41%42",
		"100%",
		"%",
		"%zz",
		"a+b c",
		"a;b",
		"?grant_type=x",
		"/../../cgi-bin/token",
		"line1\nline2",
		"a\r\nX-Injected: yes",
		"\r\n\r\nGET / HTTP/1.1",
		"\x00nul",
		"\xff\xfe",
		"中文🙂",
		"\u202eRTL",
		`"quoted"'s`,
		"|sku|",
	}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		var (
			mu       sync.Mutex
			queries  []string // RawQuery of each request
			injected bool
		)
		target, err := url.Parse(e.wx.URL)
		if err != nil {
			t.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			queries = append(queries, r.URL.RawQuery)
			injected = injected || r.Header.Get("X-Injected") != "" || r.URL.Path != mpauthxtest.Code2SessionPath
			mu.Unlock()
			proxy.ServeHTTP(w, r)
		}))
		defer front.Close()
		c := e.client(t, func(cfg *mpauthx.Config) { cfg.APIBase = front.URL })
		data, iv := e.wx.UserInfo(e.user("coder").OpenID)
		for _, code := range codes {
			t.Run(code, func(t *testing.T) {
				for _, call := range []struct {
					name string
					f    func() (mpauthx.Result, error)
				}{
					{"AuthorizeCode", func() (mpauthx.Result, error) { return c.AuthorizeCode(bg, code) }},
					{"Authorize", func() (mpauthx.Result, error) { return c.Authorize(bg, code, data, iv) }},
				} {
					before := e.wx.Requests()
					mu.Lock()
					queries = queries[:0]
					mu.Unlock()
					res, err := call.f()
					// The fake WeChat found every other parameter right and
					// did not know the code: 40029.
					var we *mpauthx.WeChatError
					if res.StatusCode != mpauthx.StatusSessionKeyRequestError || !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeInvalidCode {
						t.Fatalf("%s = %+v, %v; want 6008 with errcode 40029", call.name, res, err)
					}
					wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
					if n := e.wx.Requests() - before; n != 1 {
						t.Fatalf("%s: %d requests reached WeChat, want 1", call.name, n)
					}
					mu.Lock()
					got := slices.Clone(queries)
					mu.Unlock()
					if len(got) != 1 {
						t.Fatalf("%s: %d requests, want 1", call.name, len(got))
					}
					q, err := url.ParseQuery(got[0])
					if err != nil {
						t.Fatalf("%s: query %q does not parse: %v", call.name, got[0], err)
					}
					want := url.Values{
						"appid":      {e.wx.AppID},
						"secret":     {e.wx.AppSecret},
						"js_code":    {code},
						"grant_type": {"authorization_code"},
					}
					if len(q) != len(want) {
						t.Fatalf("%s: query has parameters %q, want exactly appid, secret, js_code, grant_type", call.name, slices.Sorted(maps.Keys(q)))
					}
					for k, v := range want {
						if !slices.Equal(q[k], v) {
							t.Fatalf("%s: %s = %q, want %q", call.name, k, q[k], v)
						}
					}
				}
			})
		}
		t.Run("2 MiB code", func(t *testing.T) {
			// Go's HTTP server refuses a request line over 1 MiB (431);
			// whether the client sees that reply or a reset connection,
			// Authorize reports the failed code2session.
			_, err := c.AuthorizeCode(bg, strings.Repeat("c", 2*mib))
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			var inner *mpauthx.Error
			if !errors.As(errors.Unwrap(err), &inner) || (inner.Code != mpauthx.StatusHTTPError && inner.Code != mpauthx.StatusHTTPRequestError) {
				t.Fatalf("cause of %.200v is not a 6002 or 6006", err)
			}
		})
		if injected {
			t.Fatal("a code injected a header or changed the path")
		}
		if n := e.userRows(t); n != 0 {
			t.Fatalf("%d user rows after failed logins", n)
		}
		if keys := e.skuKeys(t); len(keys) != 0 {
			t.Fatalf("keys after failed logins: %q", keys)
		}
	})
}

// TestHostileOpenIDsAreLiteral complements TestSQLLiterals (Authorize, then
// RefreshToken by pattern): the same kind of IDs through AuthorizeCode,
// whose insert-if-missing would skip a new user whose ID matches an
// existing one as a LIKE pattern, through the profile upsert, which would
// overwrite the wrong row, and as a unionid; each user's token stays its
// own.
func TestHostileOpenIDsAreLiteral(t *testing.T) {
	// In this order, each ID after the first matches an earlier one when
	// read as a LIKE pattern (or a Redis glob).
	ids := []string{`oab`, `o_b`, `o%`, `o\%`, `o\\%`, `o%%`, `o[ab]`, `o*`, `o?`, `o'b`, `o''b`, `o"b`, `o'--`, `o' OR '1'='1`}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		tokens := map[string]string{}
		for _, id := range ids {
			e.wx.AddUser(mpauthxtest.User{OpenID: id, NickName: "nick " + id})
			res, err := e.c.AuthorizeCode(bg, e.wx.Code(id))
			if err != nil {
				t.Fatalf("AuthorizeCode(%q): %v", id, err)
			}
			if got := e.c.ExtractOpenID(res.Response); got != id {
				t.Fatalf("AuthorizeCode(%q): token of %q", id, got)
			}
			tokens[id] = res.Response
			var n int
			if err := e.queryRow(`SELECT count(*) FROM user WHERE openId = ?`, id).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%q: %d rows (%v) after AuthorizeCode", id, n, err)
			}
		}
		// The profile upserts, in reverse order so that a pattern match
		// would hit rows written before.
		for _, id := range slices.Backward(ids) {
			if tok := e.login(t, mpauthxtest.User{OpenID: id}); tok != tokens[id] {
				t.Fatalf("Authorize(%q) = %q, want its live token %q", id, tok, tokens[id])
			}
		}
		for _, id := range ids {
			var nick string
			if err := e.queryRow(`SELECT nickName FROM user WHERE openId = ?`, id).Scan(&nick); err != nil || nick != "nick "+id {
				t.Fatalf("%q: nickName %q, %v", id, nick, err)
			}
		}
		if n := e.userRows(t); n != len(ids) {
			t.Fatalf("%d rows, want %d", n, len(ids))
		}
		// Refreshing or revoking one user's token touches no other.
		res, err := e.c.RefreshToken(bg, `o_b`)
		if err != nil || e.c.ExtractOpenID(res.Response) != `o_b` {
			t.Fatalf("RefreshToken(o_b) = %+v, %v", res, err)
		}
		if err := e.c.RevokeToken(bg, tokens[`o%`]); err != nil {
			t.Fatal(err)
		}
		if err := e.c.RevokeToken(bg, tokens[`o*`]); err != nil {
			t.Fatal(err)
		}
		for id, tok := range tokens {
			want := id != `o_b` && id != `o%` && id != `o*`
			if got := e.valid(t, tok); got != want {
				t.Errorf("token of %q valid = %v, want %v", id, got, want)
			}
		}
		if !e.valid(t, res.Response) {
			t.Error("the refreshed token of o_b is not valid")
		}
		if keys := e.skuKeys(t); len(keys) != len(ids)-2 {
			t.Errorf("%d keys, want %d", len(keys), len(ids)-2)
		}

		t.Run("unionid", func(t *testing.T) {
			u := e.wx.AddUser(mpauthxtest.User{OpenID: "o-union-holder", UnionID: `u_%'"`})
			res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if err != nil || e.c.ExtractOpenID(res.Response) != u.UnionID {
				t.Fatalf("AuthorizeCode = %+v, %v; want a token of the unionid", res, err)
			}
			var n int
			if err := e.queryRow(`SELECT count(*) FROM user WHERE openId = ?`, u.UnionID).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%d rows for the unionid (%v)", n, err)
			}
			if _, err := e.c.RefreshToken(bg, `u_%'`); mpauthx.Code(err) != mpauthx.StatusUserNotExist {
				t.Fatalf("RefreshToken of a prefix of the unionid: %v, want 6010", err)
			}
		})
	})
}

// TestHugeWeChatReply sends code2session replies of several MiB: each is
// refused with 6008 around a 6005 after reading 1 MiB + 1 byte, even when
// what lies past the limit would make it a valid reply.
func TestHugeWeChatReply(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("big")
		valid := `{"openid":"o-padded","session_key":"` + u.SessionKey + `"}`
		pad := func(n int) []byte { return []byte(valid + strings.Repeat(" ", n-len(valid))) }
		tests := []struct {
			name string
			body []byte
			ok   bool // the reply is accepted
		}{
			{"exactly 1 MiB", pad(mib), true},
			{"1 MiB and a byte", pad(mib + 1), false},
			{"valid reply padded to 4 MiB", pad(4 * mib), false},
			{"3 MiB errmsg", []byte(`{"errcode":40029,"errmsg":"` + strings.Repeat("e", 3*mib) + `"}`), false},
			{"3 MiB openid", []byte(`{"openid":"` + strings.Repeat("o", 3*mib) + `","session_key":"k"}`), false},
			{"5 MiB of binary", bytes.Repeat([]byte{0, 0xff, '{', '"'}, 5*mib/4), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.wx.FailNext(1, mpauthxtest.Fault{Body: tt.body})
				res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				if tt.ok {
					if err != nil || e.c.ExtractOpenID(res.Response) != "o-padded" {
						t.Fatalf("AuthorizeCode = %+v, %v; want a token of o-padded", res, err)
					}
					return
				}
				wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
				var inner *mpauthx.Error
				if !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPResponseError || !strings.Contains(inner.Message, "1 MiB") {
					t.Fatalf("cause of %v is not the 1 MiB limit (6005)", err)
				}
				if res.Response != "" || len(err.Error()) > 1000 {
					t.Fatalf("Result %+v, error of %d bytes", res, len(err.Error()))
				}
			})
		}
		t.Run("endless", func(t *testing.T) {
			// A reply that never ends: reading it all would run into the
			// ctx deadline instead of the 1 MiB limit.
			var sent atomic.Int64
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(valid))
				for r.Context().Err() == nil {
					n, err := w.Write(chunk)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			}))
			c := e.client(t, func(cfg *mpauthx.Config) { cfg.APIBase = endless.URL })
			ctx, cancel := context.WithTimeout(bg, time.Minute)
			defer cancel()
			_, err := c.AuthorizeCode(ctx, "any-code")
			endless.Close() // waits for the handler, which stops once the client hangs up
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			var inner *mpauthx.Error
			if errors.Is(err, context.DeadlineExceeded) || !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPResponseError {
				t.Fatalf("err = %v, want the 1 MiB limit (6005), not a timeout", err)
			}
			// What the server got out before the client hung up: 1 MiB read
			// plus what the sockets' buffers hold.
			if n := sent.Load(); n > 64*mib {
				t.Fatalf("the server wrote %d MiB before the client hung up", n/mib)
			}
		})
		if n := e.userRows(t); n != 1 {
			t.Fatalf("%d user rows, want only o-padded's", n)
		}
	})
}

// TestNestedJSON sends 100k levels of nesting as WeChat's reply and as
// the decrypted profile: a parse error with its code, no stack overflow.
func TestNestedJSON(t *testing.T) {
	const depth = 100000
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("nest")
		arrays := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		t.Run("code2session reply", func(t *testing.T) {
			for name, body := range map[string]string{
				"open arrays":        strings.Repeat("[", depth),
				"closed arrays":      arrays,
				"open objects":       strings.Repeat(`{"a":`, depth),
				"inside a valid one": `{"openid":"o-nest","session_key":"` + u.SessionKey + `","x":` + arrays + `}`,
				"in errmsg position": `{"errcode":40029,"errmsg":` + arrays + `}`,
			} {
				e.wx.FailNext(1, mpauthxtest.Fault{Body: []byte(body)})
				_, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
				var inner *mpauthx.Error
				if !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusJSONParseError {
					t.Fatalf("%s: cause of %v is not 6004", name, err)
				}
			}
		})
		t.Run("encryptedData", func(t *testing.T) {
			for name, plain := range map[string]string{
				"open arrays":        strings.Repeat("[", depth),
				"closed arrays":      arrays,
				"open objects":       strings.Repeat(`{"a":`, depth),
				"inside a valid one": `{"openId":"` + u.OpenID + `","watermark":{"appid":"` + e.wx.AppID + `"},"x":` + arrays + `}`,
			} {
				data, iv := e.wx.EncryptFor(u.OpenID, []byte(plain))
				_, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
				if mpauthx.Code(err) != mpauthx.StatusDecryptError {
					t.Fatalf("%s: %v, want 6011", name, err)
				}
			}
		})
		if n := e.userRows(t); n != 0 {
			t.Fatalf("%d user rows after failed logins", n)
		}
		if keys := e.skuKeys(t); len(keys) != 0 {
			t.Fatalf("keys after failed logins: %q", keys)
		}
	})
}

// TestHugeEncryptedData sends encryptedData and iv of several MiB: a
// clean 6011 once decryption fails, or 6001 if the library refuses the
// size before calling WeChat; never a stored user or token.
func TestHugeEncryptedData(t *testing.T) {
	const size = 3 * mib
	random := make([]byte, size)
	rand.Read(random)
	random64 := base64.StdEncoding.EncodeToString(random)
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("huge")
		data, iv := e.wx.UserInfo(u.OpenID)
		garbage, garbageIV := e.wx.EncryptFor(u.OpenID, bytes.Repeat([]byte("x"), size))
		tests := []struct{ name, data, iv string }{
			{"3 MiB of random blocks", random64, iv},
			{"3 MiB not base64", strings.Repeat("%", size), iv},
			{"3 MiB of base64 padding", strings.Repeat("=", size), iv},
			{"3 MiB encrypted, not JSON", garbage, garbageIV},
			{"3 MiB iv", data, random64},
			{"3 MiB of binary", string(random), iv},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := e.wx.Requests()
				res, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), tt.data, tt.iv)
				switch code := mpauthx.Code(err); code {
				case mpauthx.StatusDecryptError:
				case mpauthx.StatusRequiredParamsMissing:
					if e.wx.Requests() != before {
						t.Fatal("refused as too large only after calling WeChat")
					}
				default:
					t.Fatalf("code %d (%.200v), want 6011 or 6001", code, err)
				}
				if res != mpauthx.ErrorResult(err) || len(err.Error()) > 1000 {
					t.Fatalf("Result %+v, error of %d bytes", res, len(err.Error()))
				}
			})
		}
		if n := e.userRows(t); n != 0 {
			t.Fatalf("%d user rows after failed logins", n)
		}
		if keys := e.skuKeys(t); len(keys) != 0 {
			t.Fatalf("keys after failed logins: %q", keys)
		}
	})
}

// TestHostileProfilesStored logs in users whose decrypted profile holds
// what one database accepts and the other refuses: a NUL character in a
// text field, a gender outside PostgreSQL's 32-bit integer, an overlong
// field. Every login must succeed on every backend, SQLite and
// PostgreSQL alike, and store the same normalised profile.
func TestHostileProfilesStored(t *testing.T) {
	long := strings.Repeat("中", 400) // 1200 bytes
	tests := []struct {
		name string
		in   mpauthxtest.User
		want [6]string // nickName, city, country, province, language, gender as stored
	}{
		{"NUL in the nickname", mpauthxtest.User{NickName: "nul\x00nick", City: "a\x00", Gender: 2},
			[6]string{"nulnick", "a", "", "", "", "2"}},
		{"gender 2^31", mpauthxtest.User{NickName: "big", Gender: 1 << 31},
			[6]string{"big", "", "", "", "", "0"}},
		{"gender 2^40", mpauthxtest.User{NickName: "huge", Gender: 1 << 40},
			[6]string{"huge", "", "", "", "", "0"}},
		{"gender -1", mpauthxtest.User{NickName: "neg", Gender: -1},
			[6]string{"neg", "", "", "", "", "0"}},
		{"gender 3", mpauthxtest.User{NickName: "three", Gender: 3, Language: "zh_CN"},
			[6]string{"three", "", "", "", "zh_CN", "0"}},
		{"overlong fields", mpauthxtest.User{NickName: long, Province: long, Country: "CN"},
			[6]string{strings.Repeat("中", 85), "", "CN", strings.Repeat("中", 85), "", "0"}},
	}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				in := tt.in
				in.OpenID = "o-profile-" + rand.Text()[:10]
				u := e.wx.AddUser(in)
				token := e.login(t, u)
				if !e.valid(t, token) {
					t.Fatal("the login's token is not valid")
				}
				var got [6]string
				if err := e.queryRow(`SELECT coalesce(nickName, ''), coalesce(city, ''), coalesce(country, ''), coalesce(province, ''),
					coalesce(language, ''), coalesce(gender, 0) FROM user WHERE openId = ?`, u.OpenID).
					Scan(&got[0], &got[1], &got[2], &got[3], &got[4], &got[5]); err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("stored %q, want %q", got, tt.want)
				}
			})
		}
	})
}
