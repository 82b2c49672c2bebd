package mpauthx_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

var bg = context.Background()

// wantCode fails the test unless err carries code (outermost *Error).
func wantCode(t *testing.T, err error, code mpauthx.StatusCode) {
	t.Helper()
	if got := mpauthx.Code(err); got != code {
		t.Fatalf("Code(err) = %d, want %d (err: %v)", got, code, err)
	}
	var e *mpauthx.Error
	if code != mpauthx.StatusSuccess && !errors.As(err, &e) {
		t.Fatalf("err %v is not an *mpauthx.Error", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	db := tempSQLite(t)
	bare, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "bare.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	good := mpauthx.Config{AppID: "wx1", AppSecret: "sec", Sku: "s", DB: db, RedisAddr: "127.0.0.1:1"}
	tests := []struct {
		name  string
		tweak func(*mpauthx.Config)
		want  string
	}{
		{"no AppID", func(c *mpauthx.Config) { c.AppID = "" }, "AppID"},
		{"no AppSecret", func(c *mpauthx.Config) { c.AppSecret = "" }, "AppSecret"},
		{"no Sku", func(c *mpauthx.Config) { c.Sku = "" }, "Sku"},
		{"Sku with bar", func(c *mpauthx.Config) { c.Sku = "a|b" }, "Sku"},
		{"Sku with newline", func(c *mpauthx.Config) { c.Sku = "a\nb" }, "Sku"},
		{"Sku with edge space", func(c *mpauthx.Config) { c.Sku = "pro " }, "Sku"},
		{"nil *redis.Client", func(c *mpauthx.Config) { c.Redis = (*redis.Client)(nil) }, "Config.Redis"},
		{"nil *redis.ClusterClient", func(c *mpauthx.Config) { c.Redis = (*redis.ClusterClient)(nil) }, "Config.Redis"},
		{"nil *redis.Ring", func(c *mpauthx.Config) { c.Redis = (*redis.Ring)(nil) }, "Config.Redis"},
		{"negative TTL", func(c *mpauthx.Config) { c.TokenTTL = -time.Second }, "TokenTTL"},
		{"sub-millisecond TTL", func(c *mpauthx.Config) { c.TokenTTL = time.Microsecond }, "TokenTTL"},
		{"no DB", func(c *mpauthx.Config) { c.DB = nil }, "DB"},
		{"APIBase not a URL", func(c *mpauthx.Config) { c.APIBase = "::nope" }, "APIBase"},
		{"APIBase ftp", func(c *mpauthx.Config) { c.APIBase = "ftp://x" }, "APIBase"},
		{"DB without table", func(c *mpauthx.Config) { c.DB = bare }, "mpauthx.Schema"},
		{"unsupported driver", func(c *mpauthx.Config) { c.DB = sql.OpenDB(fakeConnector{}) }, "sqlite3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.tweak(&cfg)
			c, err := mpauthx.New(cfg)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sec") && tt.name != "no AppSecret" {
				t.Fatalf("error %q leaks the secret", err)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		c, err := mpauthx.New(good)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("table created with Schema", func(t *testing.T) {
		if _, err := bare.Exec(mpauthx.Schema); err != nil {
			t.Fatal(err)
		}
		cfg := good
		cfg.DB = bare
		c, err := mpauthx.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// fakeConnector opens a database/sql driver that is neither SQLite nor pgx.
type fakeConnector struct{}

func (fakeConnector) Connect(context.Context) (driver.Conn, error) { return nil, errors.New("fake") }
func (fakeConnector) Driver() driver.Driver                        { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return nil, errors.New("fake") }

func TestClientStringRedactsSecret(t *testing.T) {
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.AppSecret = "very-secret" }, func(t *testing.T, e *env) {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("client", "c", e.c)
		for _, s := range []string{fmt.Sprintf("%v %+v %s %#v", e.c, e.c, e.c, e.c), buf.String()} {
			if strings.Contains(s, "very-secret") || !strings.Contains(s, e.cfg.AppID) {
				t.Fatalf("%q: secret shown or AppID missing", s)
			}
		}
	})
}

func TestConfigStringRedactsSecret(t *testing.T) {
	cfg := mpauthx.Config{AppID: "wx1", AppSecret: "very-secret", RedisPassword: "very-secret", Sku: "s"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "config", cfg)
	// What the godoc promises: a Config, a *Config, and a Config in an
	// exported field (not one in an unexported field).
	holder := struct{ Cfg mpauthx.Config }{cfg}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v %+v %s %#v", cfg, cfg, cfg, cfg), fmt.Sprintf("%v %+v %#v", &cfg, &cfg, &cfg),
		fmt.Sprintf("%v %+v", holder, &holder), buf.String()} {
		if strings.Contains(s, "very-secret") || !strings.Contains(s, "wx1") {
			t.Fatalf("%q: secret shown or AppID missing", s)
		}
	}
}

// TestAPIBasePasswordMasked checks that a password in APIBase's userinfo
// (a proxy's, say), which Go's own errors mask, stays masked in the
// Config's text, in New's error for a bad APIBase, and in the error of a
// request that fails.
func TestAPIBasePasswordMasked(t *testing.T) {
	const pw = "proxy-pa55word"
	dead := "http://user:" + pw + "@" + closedAddr(t) + "/base"
	cfg := mpauthx.Config{AppID: "wx1", AppSecret: "s", Sku: "s", APIBase: dead}
	texts := map[string]string{"Config": fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)}
	bad := cfg
	bad.APIBase = "ftp://user:" + pw + "@example.com/"
	bad.DB = tempSQLite(t)
	if _, err := mpauthx.New(bad); err == nil {
		t.Fatal("New accepted an ftp APIBase")
	} else {
		texts["New"] = err.Error()
	}
	e := newEnv(t, backends()[0], func(c *mpauthx.Config) { c.APIBase = dead })
	_, err := e.c.AuthorizeCode(bg, "a-code")
	if mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError {
		t.Fatalf("AuthorizeCode against a closed port: %v, want 6008", err)
	}
	texts["AuthorizeCode"] = fmt.Sprintf("%v %+v", err, err)
	for u := err; u != nil; u = errors.Unwrap(u) {
		texts["AuthorizeCode"] += "\n" + u.Error()
	}
	for name, text := range texts {
		if strings.Contains(text, pw) {
			t.Errorf("%s shows the APIBase password: %s", name, text)
		}
		if name != "New" && !strings.Contains(text, "user:xxxxx@") {
			t.Errorf("%s does not show the masked APIBase: %s", name, text)
		}
	}
}

func TestAuthorize(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("ann")
		token := e.login(t, u)
		parts := strings.Split(token, "|")
		if len(parts) != 3 || parts[0] != u.OpenID || parts[1] != e.cfg.Sku || len(parts[2]) < 22 {
			t.Fatalf("token %q is not <openid>|<sku>|<session>", token)
		}
		if got := e.c.ExtractOpenID(token); got != u.OpenID {
			t.Errorf("ExtractOpenID = %q", got)
		}
		if got := e.c.ExtractSku(token); got != e.cfg.Sku {
			t.Errorf("ExtractSku = %q", got)
		}
		if !e.valid(t, token) {
			t.Fatal("fresh token is not valid")
		}
		var nick, city string
		var gender int
		if err := e.queryRow(`SELECT nickName, city, gender FROM user WHERE openId = ?`, u.OpenID).Scan(&nick, &city, &gender); err != nil {
			t.Fatal(err)
		}
		if nick != "ann" || city != "Guangzhou" || gender != 1 {
			t.Fatalf("row = %q %q %d", nick, city, gender)
		}
		ttl := e.rdb.PTTL(bg, e.key(u.OpenID)).Val()
		if ttl <= mpauthx.DefaultTokenTTL-time.Minute || ttl > mpauthx.DefaultTokenTTL {
			t.Fatalf("PTTL = %v, want about %v", ttl, mpauthx.DefaultTokenTTL)
		}
	})
}

// TestLoginAfterScriptFlush: Redis forgets its cached scripts when it
// restarts or is told SCRIPT FLUSH; logins must then send the script
// itself (EVAL), through the pipeline as through a Ring's plain calls.
func TestLoginAfterScriptFlush(t *testing.T) {
	flush := func(t *testing.T, rdb redis.UniversalClient) {
		t.Helper()
		var err error
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(bg, func(ctx context.Context, m *redis.Client) error { return m.ScriptFlush(ctx).Err() })
		} else {
			err = rdb.ScriptFlush(bg).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, e *env) {
		t.Helper()
		e.login(t, e.user("fay")) // the script is cached now
		for i, name := range []string{"gus", "hal"} {
			flush(t, e.rdb)
			u := e.user(name)
			tok := e.login(t, u)
			if !e.valid(t, tok) {
				t.Fatalf("login %d after SCRIPT FLUSH: token not valid", i+1)
			}
			if again := e.login(t, u); again != tok {
				t.Fatalf("login %d after SCRIPT FLUSH: second login got another token", i+1)
			}
		}
	}
	forEachRedis(t, nil, check)
	t.Run("ring", func(t *testing.T) {
		check(t, newEnv(t, ringBackend, nil))
	})
}

func TestAuthorizeResultIsJSONReady(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("bob")
		data, iv := e.wx.UserInfo(u.OpenID)
		res, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res)
		want := fmt.Sprintf(`{"status_code":1,"status_message":"OK","response":%q}`, res.Response)
		if string(b) != want {
			t.Fatalf("JSON = %s, want %s", b, want)
		}
		res, err = e.c.Authorize(bg, "", data, iv)
		if res != mpauthx.ErrorResult(err) || res.StatusCode != mpauthx.StatusRequiredParamsMissing || res.Response != "" {
			t.Fatalf("failure Result = %+v", res)
		}
	})
}

func TestUnionID(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		t.Run("from code2session", func(t *testing.T) {
			u := e.wx.AddUser(mpauthxtest.User{OpenID: "oU1" + e.cfg.Sku, UnionID: "un1" + e.cfg.Sku})
			if got := e.c.ExtractOpenID(e.login(t, u)); got != u.UnionID {
				t.Fatalf("user ID = %q, want unionid %q", got, u.UnionID)
			}
			res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if err != nil || e.c.ExtractOpenID(res.Response) != u.UnionID {
				t.Fatalf("AuthorizeCode = %+v, %v", res, err)
			}
		})
		t.Run("only in encryptedData", func(t *testing.T) {
			u := e.wx.AddUser(mpauthxtest.User{OpenID: "oU2" + e.cfg.Sku, UnionID: "un2" + e.cfg.Sku, OmitUnionIDInSession: true})
			if got := e.c.ExtractOpenID(e.login(t, u)); got != u.UnionID {
				t.Fatalf("user ID = %q, want unionId %q", got, u.UnionID)
			}
			var n int
			e.queryRow(`SELECT count(*) FROM user WHERE openId = ?`, u.UnionID).Scan(&n)
			if n != 1 {
				t.Fatalf("no row for the unionId")
			}
		})
	})
}

func TestSecondLoginSharesTokenWithoutExtendingTTL(t *testing.T) {
	forEachRedis(t, func(c *mpauthx.Config) { c.TokenTTL = 3 * time.Second }, func(t *testing.T, e *env) {
		u := e.user("cat")
		first := e.login(t, u)
		e.advance(1200 * time.Millisecond)
		second := e.login(t, u)
		if first != second {
			t.Fatalf("second login got a new token")
		}
		if ttl := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(); ttl > 2*time.Second {
			t.Fatalf("PTTL = %v: the second login extended the TTL", ttl)
		}
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil || res.Response != first {
			t.Fatalf("AuthorizeCode = %+v, %v; want the live token", res, err)
		}
	})
}

func TestTokenExpires(t *testing.T) {
	forEachRedis(t, func(c *mpauthx.Config) { c.TokenTTL = 300 * time.Millisecond }, func(t *testing.T, e *env) {
		u := e.user("dan")
		token := e.login(t, u)
		if !e.valid(t, token) {
			t.Fatal("not valid before expiry")
		}
		e.advance(450 * time.Millisecond)
		if e.valid(t, token) {
			t.Fatal("still valid after the TTL")
		}
		again := e.login(t, u)
		if again == token || !e.valid(t, again) {
			t.Fatal("login after expiry did not issue a new live token")
		}
	})
}

func TestRequiredParams(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		tests := []struct {
			name string
			call func() (mpauthx.Result, error)
			want string
		}{
			{"Authorize code", func() (mpauthx.Result, error) { return e.c.Authorize(bg, "", "d", "i") }, "code"},
			{"Authorize encryptedData", func() (mpauthx.Result, error) { return e.c.Authorize(bg, "c", "", "i") }, "encryptedData"},
			{"Authorize iv", func() (mpauthx.Result, error) { return e.c.Authorize(bg, "c", "d", "") }, "iv"},
			{"AuthorizeCode code", func() (mpauthx.Result, error) { return e.c.AuthorizeCode(bg, "") }, "code"},
			{"RefreshToken userID", func() (mpauthx.Result, error) { return e.c.RefreshToken(bg, "") }, "userID"},
			{"RefreshToken userID with bar", func() (mpauthx.Result, error) { return e.c.RefreshToken(bg, "a|b") }, "userID"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := tt.call()
				wantCode(t, err, mpauthx.StatusRequiredParamsMissing)
				if !strings.Contains(res.StatusMessage, tt.want) {
					t.Fatalf("message %q does not name %q", res.StatusMessage, tt.want)
				}
			})
		}
		if n := e.wx.Requests(); n != 0 {
			t.Fatalf("%d requests reached WeChat", n)
		}
	})
}

func TestWeChatFailures(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("eve")
		used := e.wx.Code(u.OpenID)
		if _, err := e.c.AuthorizeCode(bg, used); err != nil {
			t.Fatal(err)
		}
		huge := append([]byte(`{"openid":"x","session_key":"`), bytes.Repeat([]byte("A"), 2<<20)...)
		tests := []struct {
			name    string
			fault   *mpauthxtest.Fault
			code    func() string
			inner   mpauthx.StatusCode // 0: none expected
			errcode int                // 0: no *WeChatError expected
		}{
			{"invalid code", nil, func() string { return "no-such-code" }, 0, 40029},
			{"code used", nil, func() string { return used }, 0, 40163},
			{"rate limited", &mpauthxtest.Fault{ErrCode: 45011}, nil, 0, 45011},
			{"high risk", &mpauthxtest.Fault{ErrCode: 40226}, nil, 0, 40226},
			{"http 500", &mpauthxtest.Fault{Status: 500}, nil, mpauthx.StatusHTTPError, 0},
			{"http 404", &mpauthxtest.Fault{Status: 404, Body: []byte("not found")}, nil, mpauthx.StatusHTTPError, 0},
			{"empty body", &mpauthxtest.Fault{Body: []byte{}}, nil, mpauthx.StatusResponseIsNull, 0},
			{"not JSON", &mpauthxtest.Fault{Body: []byte("<html>busy</html>")}, nil, mpauthx.StatusJSONParseError, 0},
			{"over 1 MiB", &mpauthxtest.Fault{Body: huge}, nil, mpauthx.StatusHTTPResponseError, 0},
			{"no openid", &mpauthxtest.Fault{Body: []byte(`{"session_key":"abc"}`)}, nil, mpauthx.StatusSessionKeyRequestError, 0},
			{"no session_key", &mpauthxtest.Fault{Body: []byte(`{"openid":"abc"}`)}, nil, mpauthx.StatusSessionKeyRequestError, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code := e.wx.Code(u.OpenID)
				if tt.code != nil {
					code = tt.code()
				}
				if tt.fault != nil {
					e.wx.FailNext(1, *tt.fault)
				}
				for _, call := range []func() (mpauthx.Result, error){
					func() (mpauthx.Result, error) { return e.c.AuthorizeCode(bg, code) },
				} {
					res, err := call()
					wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
					if res.Response != "" || res.StatusCode != mpauthx.StatusSessionKeyRequestError {
						t.Fatalf("Result = %+v", res)
					}
					var we *mpauthx.WeChatError
					if got := errors.As(err, &we); got != (tt.errcode != 0) || (got && we.ErrCode != tt.errcode) {
						t.Fatalf("WeChatError = %v, want errcode %d (err %v)", we, tt.errcode, err)
					}
					if tt.inner != 0 {
						var inner *mpauthx.Error
						if !errors.As(errors.Unwrap(err), &inner) || inner.Code != tt.inner {
							t.Fatalf("inner error of %v is not code %d", err, tt.inner)
						}
					}
				}
			})
		}
		t.Run("Authorize wraps too", func(t *testing.T) {
			e.wx.FailNext(1, mpauthxtest.Fault{Status: 502})
			data, iv := e.wx.UserInfo(u.OpenID)
			_, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
		})
		t.Run("wrong secret", func(t *testing.T) {
			c := e.client(t, func(cfg *mpauthx.Config) { cfg.AppSecret = "wrong-secret" })
			_, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			var we *mpauthx.WeChatError
			if !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeInvalidSecret {
				t.Fatalf("err = %v, want errcode 40125", err)
			}
		})
		t.Run("wrong appid", func(t *testing.T) {
			c := e.client(t, func(cfg *mpauthx.Config) { cfg.AppID = "wx-other" })
			_, err := c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
			var we *mpauthx.WeChatError
			if !errors.As(err, &we) || we.ErrCode != mpauthx.ErrCodeInvalidAppID {
				t.Fatalf("err = %v, want errcode 40013", err)
			}
		})
		t.Run("no connection", func(t *testing.T) {
			dead := httptest.NewServer(http.NotFoundHandler())
			dead.Close()
			c := e.client(t, func(cfg *mpauthx.Config) { cfg.APIBase = dead.URL })
			_, err := c.AuthorizeCode(bg, "a-code")
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			var inner *mpauthx.Error
			if !errors.As(errors.Unwrap(err), &inner) || inner.Code != mpauthx.StatusHTTPRequestError {
				t.Fatalf("inner of %v is not 6006", err)
			}
		})
		var rows int
		e.queryRow(`SELECT count(*) FROM user`).Scan(&rows)
		if rows != 1 {
			t.Fatalf("%d user rows, want only the one of the successful login", rows)
		}
	})
}

func TestBusyIsRetried(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("fay")
		e.wx.FailNext(2, mpauthxtest.Fault{ErrCode: -1})
		before := e.wx.Requests()
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatalf("two busy answers then success: %v", err)
		}
		if n := e.wx.Requests() - before; n != 3 {
			t.Fatalf("%d requests, want 3", n)
		}
		e.wx.FailNext(100, mpauthxtest.Fault{ErrCode: -1})
		before = e.wx.Requests()
		_, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		var we *mpauthx.WeChatError
		if !errors.As(err, &we) || we.ErrCode != -1 {
			t.Fatalf("err = %v, want errcode -1", err)
		}
		if n := e.wx.Requests() - before; n != 4 {
			t.Fatalf("%d requests for a busy storm, want 4 (bounded retries)", n)
		}
	})
}

func TestDecryptFailures(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("gus")
		other := e.user("hal")
		data, iv := e.wx.UserInfo(u.OpenID)
		otherApp, otherIV := e.wx.EncryptFor(u.OpenID, []byte(`{"openId":"`+u.OpenID+`","watermark":{"appid":"wx-someone-else"}}`))
		notJSON, notJSONIV := e.wx.EncryptFor(u.OpenID, []byte(`hello`))
		tests := []struct {
			name     string
			data, iv string
			want     mpauthx.StatusCode
		}{
			{"data not base64", "%%%", iv, mpauthx.StatusDecryptError},
			{"iv not base64", data, "%%%", mpauthx.StatusDecryptError},
			{"iv 8 bytes", data, "AAAAAAAAAAA=", mpauthx.StatusDecryptError},
			{"data not whole blocks", "AAAAAAAAAAAAAAAAAAAAAAA=", iv, mpauthx.StatusDecryptError},
			{"wrong iv", data, otherIV, mpauthx.StatusDecryptError},
			{"not JSON", notJSON, notJSONIV, mpauthx.StatusDecryptError},
			{"another app's watermark", otherApp, otherIV, mpauthx.StatusDecryptError},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), tt.data, tt.iv)
				wantCode(t, err, tt.want)
			})
		}
		t.Run("another user's data", func(t *testing.T) {
			mine, mineIV := e.wx.EncryptFor(u.OpenID, []byte(`{"openId":"`+other.OpenID+`","watermark":{"appid":"`+e.wx.AppID+`"}}`))
			_, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), mine, mineIV)
			wantCode(t, err, mpauthx.StatusOpenIDMismatch)
		})
		t.Run("session key rotated", func(t *testing.T) {
			old, oldIV := e.wx.UserInfo(u.OpenID)
			e.wx.SetSessionKey(u.OpenID, "AAECAwQFBgcICQoLDA0ODw==")
			_, err := e.c.Authorize(bg, e.wx.Code(u.OpenID), old, oldIV)
			if c := mpauthx.Code(err); c != mpauthx.StatusDecryptError {
				t.Fatalf("code %d, want 6011", c)
			}
		})
		var rows int
		e.queryRow(`SELECT count(*) FROM user`).Scan(&rows)
		if rows != 0 {
			t.Fatalf("%d user rows written by failed logins", rows)
		}
	})
}

func TestAuthorizeCodeKeepsProfile(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		fresh := e.user("ivy")
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(fresh.OpenID))
		if err != nil || !e.valid(t, res.Response) {
			t.Fatalf("AuthorizeCode = %+v, %v", res, err)
		}
		var nick sql.NullString
		if err := e.queryRow(`SELECT nickName FROM user WHERE openId = ?`, fresh.OpenID).Scan(&nick); err != nil || nick.Valid {
			t.Fatalf("new row: nick %v, err %v; want a row without profile", nick, err)
		}
		known := e.user("jay")
		e.login(t, known)
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(known.OpenID)); err != nil {
			t.Fatal(err)
		}
		if err := e.queryRow(`SELECT nickName FROM user WHERE openId = ?`, known.OpenID).Scan(&nick); err != nil || nick.String != "jay" {
			t.Fatalf("profile after AuthorizeCode: %v, %v", nick, err)
		}
	})
}

func TestRefreshToken(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("kim")
		old := e.login(t, u)
		res, err := e.c.RefreshToken(bg, u.OpenID)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != mpauthx.StatusSuccess || res.Response == old {
			t.Fatalf("Result = %+v", res)
		}
		if e.valid(t, old) || !e.valid(t, res.Response) {
			t.Fatal("after refresh the old token must be invalid and the new one valid")
		}
		if ttl := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(); ttl <= 0 {
			t.Fatalf("refreshed key PTTL = %v", ttl)
		}
		if next := e.login(t, u); next != res.Response {
			t.Fatal("a login after a refresh must get the refreshed token")
		}
		_, err = e.c.RefreshToken(bg, "o-nobody")
		wantCode(t, err, mpauthx.StatusUserNotExist)
	})
}

func TestSQLLiterals(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		ids := []string{`o'quote`, `o%percent`, `o_under`, `o"; DROP TABLE user; --`, `o\back`, `o{brace}`, `中文openid`}
		for _, id := range ids {
			e.wx.AddUser(mpauthxtest.User{OpenID: id, NickName: id})
			token := e.login(t, e.wx.AddUser(mpauthxtest.User{OpenID: id, NickName: id}))
			if e.c.ExtractOpenID(token) != id || !e.valid(t, token) {
				t.Fatalf("%q: token %q", id, token)
			}
			var nick string
			if err := e.queryRow(`SELECT nickName FROM user WHERE openId = ?`, id).Scan(&nick); err != nil || nick != id {
				t.Fatalf("%q stored as %q, %v", id, nick, err)
			}
			if _, err := e.c.RefreshToken(bg, id); err != nil {
				t.Fatalf("RefreshToken(%q): %v", id, err)
			}
		}
		for _, pattern := range []string{"o%", "o_nder", "o_", "%", "_%", "O'QUOTE"} {
			_, err := e.c.RefreshToken(bg, pattern)
			wantCode(t, err, mpauthx.StatusUserNotExist)
		}
		var n int
		if err := e.queryRow(`SELECT count(*) FROM user`).Scan(&n); err != nil || n != len(ids) {
			t.Fatalf("count = %d, %v", n, err)
		}
	})
}

func TestIsTokenValid(t *testing.T) {
	run := func(t *testing.T, e *env) {
		u := e.user("lee")
		token := e.login(t, u)
		userID, sess := u.OpenID, token[strings.LastIndexByte(token, '|')+1:]
		tests := []struct {
			token string
			want  bool
		}{
			{token, true},
			{"", false},
			{"garbage", false},
			{userID + "|" + e.cfg.Sku, false},
			{userID + "|" + e.cfg.Sku + "|" + sess + "|x", false},
			{userID + "|other-sku|" + sess, false},
			{userID + "|" + e.cfg.Sku + "|" + strings.ToLower(sess), false},
			{userID + "|" + e.cfg.Sku + "|AAAAAAAAAAAAAAAAAAAAAAAAAA", false},
			{"o-other|" + e.cfg.Sku + "|" + sess, false},
			{"|" + e.cfg.Sku + "|" + sess, false},
			{strings.Repeat("x", 1<<20) + "|" + e.cfg.Sku + "|" + sess, false},
			{"\x00\xff|" + e.cfg.Sku + "|" + sess, false},
		}
		// A lone check with a ctx that cannot end is a plain GET; with one
		// that can, it goes through the batcher (an MGET, or a pipeline on
		// a Cluster).
		cancelable, cancel := context.WithCancel(bg)
		defer cancel()
		for _, ctx := range []context.Context{bg, cancelable} {
			for i, tt := range tests {
				if got, err := e.c.IsTokenValid(ctx, tt.token); got != tt.want || err != nil {
					t.Errorf("case %d: IsTokenValid = %v, %v; want %v, nil", i, got, err, tt.want)
				}
			}
		}

		// Something else than a string at the key (not written by
		// mpauthx) is no token, on either path.
		key := e.key(userID)
		if err := e.rdb.Del(bg, key).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.HSet(bg, key, "session", sess).Err(); err != nil {
			t.Fatal(err)
		}
		defer e.rdb.Del(bg, key)
		for _, ctx := range []context.Context{bg, cancelable} {
			if got, err := e.c.IsTokenValid(ctx, token); got || err != nil {
				t.Errorf("IsTokenValid with a hash at the key = %v, %v; want false, nil", got, err)
			}
		}
		// RevokeToken agrees that there is no token, and a login replaces
		// the foreign value with a token that works.
		if err := e.c.RevokeToken(bg, token); err != nil {
			t.Errorf("RevokeToken with a hash at the key = %v; want nil", err)
		}
		if typ := e.rdb.Type(bg, key).Val(); typ != "hash" {
			t.Errorf("RevokeToken changed the foreign key: its type is %q", typ)
		}
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatalf("AuthorizeCode with a hash at the key: %v", err)
		}
		if !e.valid(t, res.Response) {
			t.Errorf("the token of a login over a hash at the key is not valid")
		}
		if ttl := e.rdb.PTTL(bg, key).Val(); ttl <= 0 {
			t.Errorf("the new token's key has PTTL %v", ttl)
		}
	}
	forEachRedis(t, nil, run)
	t.Run("ring", func(t *testing.T) { run(t, newEnv(t, ringBackend, nil)) })
}

// TestIsTokenValidConcurrent checks many concurrent checks, live and not,
// on every kind of Redis: each gets its own right answer from the batches
// they share.
func TestIsTokenValidConcurrent(t *testing.T) {
	run := func(t *testing.T, e *env) {
		var live, dead []string
		for i := range 6 {
			tok := e.login(t, e.user(fmt.Sprint("con", i)))
			if i%2 == 0 {
				live = append(live, tok)
				continue
			}
			if err := e.c.RevokeToken(bg, tok); err != nil {
				t.Fatal(err)
			}
			dead = append(dead, tok)
		}
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Go(func() {
				for i := range 20 {
					tok, want := live[(g+i)%len(live)], true
					if (g+i)%3 == 0 {
						tok, want = dead[(g+i)%len(dead)], false
					}
					if ok, err := e.c.IsTokenValid(ctx, tok); ok != want || err != nil {
						t.Errorf("IsTokenValid = %v, %v; want %v, nil", ok, err, want)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	forEachRedis(t, nil, run)
	t.Run("ring", func(t *testing.T) { run(t, newEnv(t, ringBackend, nil)) })
}

// TestMalformedTokensSkipRedis checks, with a Redis that cannot answer, that
// malformed tokens and other Skus are answered without a round trip.
func TestMalformedTokensSkipRedis(t *testing.T) {
	db := tempSQLite(t)
	c, err := mpauthx.New(mpauthx.Config{AppID: "wx", AppSecret: "s", Sku: "sku", DB: db, RedisAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tok := range []string{"", "a", "a|b", "o1|other|ABCDEFGHIJKLMNOPQRSTUVWXYZ", "o1|sku|short", "o1|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ|x"} {
		ok, err := c.IsTokenValid(bg, tok)
		if ok || err != nil {
			t.Errorf("IsTokenValid(%q) = %v, %v; want false, nil", tok, ok, err)
		}
		if err := c.RevokeToken(bg, tok); err != nil {
			t.Errorf("RevokeToken(%q) = %v", tok, err)
		}
	}
	ok, err := c.IsTokenValid(bg, "o1|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	if ok {
		t.Fatal("valid without Redis")
	}
	wantCode(t, err, mpauthx.StatusDatabaseError)
}

func TestRevokeToken(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("max")
		token := e.login(t, u)
		if err := e.c.RevokeToken(bg, token); err != nil {
			t.Fatal(err)
		}
		if e.valid(t, token) {
			t.Fatal("revoked token still valid")
		}
		if err := e.c.RevokeToken(bg, token); err != nil {
			t.Fatalf("second revoke: %v", err)
		}
		fresh := e.login(t, u)
		if fresh == token || !e.valid(t, fresh) {
			t.Fatal("login after revoke must issue a new token")
		}
		res, err := e.c.RefreshToken(bg, u.OpenID)
		if err != nil {
			t.Fatalf("RefreshToken: %v", err)
		}
		if err := e.c.RevokeToken(bg, fresh); err != nil {
			t.Fatal(err)
		}
		if !e.valid(t, res.Response) {
			t.Fatal("revoking a replaced token revoked its successor")
		}
	})
}

func TestConcurrentLoginsShareOneToken(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("ned")
		const n = 32
		codes := make([]string, n)
		for i := range codes {
			codes[i] = e.wx.Code(u.OpenID)
		}
		tokens := make([]string, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				var res mpauthx.Result
				var err error
				if i%2 == 0 {
					data, iv := e.wx.UserInfo(u.OpenID)
					res, err = e.c.Authorize(bg, codes[i], data, iv)
				} else {
					res, err = e.c.AuthorizeCode(bg, codes[i])
				}
				tokens[i] = res.Response
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, tok := range tokens {
			if tok != tokens[0] {
				t.Fatalf("caller %d got a different token", i)
			}
		}
		if !e.valid(t, tokens[0]) {
			t.Fatal("the shared token is not valid")
		}
	})
}

func TestConcurrentRefreshLeavesOneLiveToken(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("oli")
		first := e.login(t, u)
		const n = 32
		tokens := make([]string, n+1)
		tokens[n] = first
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := e.c.RefreshToken(bg, u.OpenID)
				if err != nil {
					t.Error(err)
				}
				tokens[i] = res.Response
			})
		}
		wg.Wait()
		live := 0
		for _, tok := range tokens {
			if e.valid(t, tok) {
				live++
			}
		}
		if live != 1 {
			t.Fatalf("%d live tokens after concurrent refreshes, want 1", live)
		}
		if ttl := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(); ttl <= 0 {
			t.Fatalf("PTTL = %v", ttl)
		}
	})
}

func TestRedisDown(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		if e.mr == nil {
			t.Skip("stopping the shared real Redis is left to the fault tests, which start their own")
		}
		u := e.user("pat")
		token := e.login(t, u)
		e.mr.Close()
		ok, err := e.c.IsTokenValid(bg, token)
		if ok {
			t.Fatal("valid while Redis is down")
		}
		wantCode(t, err, mpauthx.StatusDatabaseError)
		_, err = e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		wantCode(t, err, mpauthx.StatusDatabaseError)
		_, err = e.c.RefreshToken(bg, u.OpenID)
		wantCode(t, err, mpauthx.StatusDatabaseError)
		wantCode(t, e.c.RevokeToken(bg, token), mpauthx.StatusDatabaseError)
		if err := e.mr.Restart(); err != nil {
			t.Fatal(err)
		}
		if !e.valid(t, token) {
			t.Fatal("token lost over a Redis restart")
		}
	})
}

func TestSQLDown(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("quinn")
		e.db.Close()
		_, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		wantCode(t, err, mpauthx.StatusDatabaseError)
		data, iv := e.wx.UserInfo(u.OpenID)
		_, err = e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		wantCode(t, err, mpauthx.StatusDatabaseError)
		_, err = e.c.RefreshToken(bg, u.OpenID)
		wantCode(t, err, mpauthx.StatusDatabaseError)
	})
}

func TestContext(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("ray")
		t.Run("slow WeChat", func(t *testing.T) {
			e.wx.FailNext(1, mpauthxtest.Fault{Delay: 10 * time.Second})
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			defer cancel()
			// Had the call waited for the reply instead of its ctx, it
			// would succeed after 10 s: no clock is needed to tell.
			_, err := e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v does not wrap context.DeadlineExceeded", err)
			}
			var me *mpauthx.Error
			if !errors.As(err, &me) || !strings.HasSuffix(me.Message, ": timed out") {
				t.Errorf("message of %v does not say it timed out", err)
			}
		})
		t.Run("cancelled during busy backoff", func(t *testing.T) {
			e.wx.FailNext(1, mpauthxtest.Fault{ErrCode: -1}) // the backoff (50 ms) outlasts ctx
			ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			defer cancel()
			_, err := e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID))
			wantCode(t, err, mpauthx.StatusSessionKeyRequestError)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v does not wrap context.DeadlineExceeded", err)
			}
		})
		t.Run("cancelled storage", func(t *testing.T) {
			token := e.login(t, e.user("ray2"))
			ctx, cancel := context.WithCancel(bg)
			cancel()
			_, err := e.c.IsTokenValid(ctx, token)
			wantCode(t, err, mpauthx.StatusDatabaseError)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v does not wrap context.Canceled", err)
			}
			_, err = e.c.RefreshToken(ctx, e.c.ExtractOpenID(token))
			wantCode(t, err, mpauthx.StatusDatabaseError)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v does not wrap context.Canceled", err)
			}
		})
	})
}

func TestMiddleware(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("sam")
		token := e.login(t, u)
		h := e.c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := mpauthx.OpenIDFromContext(r.Context())
			if !ok {
				t.Error("no user ID in the context")
			}
			fmt.Fprint(w, "hello "+id)
		}))
		tests := []struct {
			name   string
			header string
			status int
			code   mpauthx.StatusCode
		}{
			{"valid", "Bearer " + token, 200, 0},
			{"lower-case scheme", "bearer " + token, 200, 0},
			{"missing", "", 401, mpauthx.StatusInvalidAccessToken},
			{"other scheme", "Basic " + token, 401, mpauthx.StatusInvalidAccessToken},
			{"bare token", token, 401, mpauthx.StatusInvalidAccessToken},
			{"invalid token", "Bearer " + token + "x", 401, mpauthx.StatusInvalidAccessToken},
			{"empty token", "Bearer ", 401, mpauthx.StatusInvalidAccessToken},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rec := serveAuth(h, tt.header)
				if rec.Code != tt.status {
					t.Fatalf("status %d, want %d", rec.Code, tt.status)
				}
				if tt.status == 200 {
					if rec.Body.String() != "hello "+u.OpenID {
						t.Fatalf("body %q", rec.Body)
					}
					return
				}
				var res mpauthx.Result
				if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.StatusCode != tt.code {
					t.Fatalf("body %q: %+v %v", rec.Body, res, err)
				}
				if strings.Contains(rec.Body.String(), token) {
					t.Fatal("reply echoes the token")
				}
			})
		}
		if e.mr != nil {
			t.Run("Redis down", func(t *testing.T) {
				e.mr.Close()
				defer e.mr.Restart()
				rec := serveAuth(h, "Bearer "+token)
				var res mpauthx.Result
				if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 503 || res.StatusCode != mpauthx.StatusDatabaseError {
					t.Fatalf("status %d, result %+v, %v", rec.Code, res, err)
				}
			})
		}
	})
}

func TestOpenIDFromContextEmpty(t *testing.T) {
	if id, ok := mpauthx.OpenIDFromContext(bg); ok || id != "" {
		t.Fatalf("got %q, %v", id, ok)
	}
}

func TestClose(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.user("tom")
		token := e.login(t, u)
		if err := e.c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := e.rdb.Ping(bg).Err(); err != nil {
			t.Fatalf("Close closed the caller's Redis: %v", err)
		}
		if err := e.db.Ping(); err != nil {
			t.Fatalf("Close closed the caller's DB: %v", err)
		}
		_, err := e.c.IsTokenValid(bg, token)
		if !errors.Is(err, mpauthx.ErrClosed) {
			t.Fatalf("IsTokenValid after Close: %v", err)
		}
		for _, err := range []error{
			e.c.RevokeToken(bg, token),
			second(e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))),
			second(e.c.Authorize(bg, "c", "d", "i")),
			second(e.c.RefreshToken(bg, u.OpenID)),
		} {
			var me *mpauthx.Error
			if !errors.As(err, &me) || !errors.Is(err, mpauthx.ErrClosed) {
				t.Fatalf("after Close: %v", err)
			}
		}
	})
	t.Run("owned Redis", func(t *testing.T) {
		db := tempSQLite(t)
		c, err := mpauthx.New(mpauthx.Config{AppID: "a", AppSecret: "b", Sku: "c", DB: db, RedisAddr: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func second(_ mpauthx.Result, err error) error { return err }

func TestCodeAndErrorResult(t *testing.T) {
	inner := &mpauthx.Error{Code: mpauthx.StatusHTTPError, Message: "WeChat answered HTTP 500"}
	outer := &mpauthx.Error{Code: mpauthx.StatusSessionKeyRequestError, Message: "session key request error", Err: inner}
	tests := []struct {
		name string
		err  error
		code mpauthx.StatusCode
		msg  string
	}{
		{"nil", nil, mpauthx.StatusSuccess, "OK"},
		{"foreign", errors.New("boom"), mpauthx.StatusUnknownError, "unknown error"},
		{"outermost wins", outer, mpauthx.StatusSessionKeyRequestError, "session key request error"},
		{"wrapped", fmt.Errorf("handler: %w", outer), mpauthx.StatusSessionKeyRequestError, "session key request error"},
		{"no message", &mpauthx.Error{Code: mpauthx.StatusDatabaseError}, mpauthx.StatusDatabaseError, "database error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mpauthx.Code(tt.err); got != tt.code {
				t.Fatalf("Code = %d, want %d", got, tt.code)
			}
			res := mpauthx.ErrorResult(tt.err)
			if res.StatusCode != tt.code || res.StatusMessage != tt.msg || res.Response != "" {
				t.Fatalf("ErrorResult = %+v", res)
			}
		})
	}
	if !errors.Is(outer, inner) || errors.Unwrap(outer) != inner {
		t.Fatal("Unwrap does not return the cause")
	}
	if s := outer.Error(); !strings.Contains(s, "6008") || !strings.Contains(s, "HTTP 500") {
		t.Fatalf("Error() = %q", s)
	}
}

func TestStatusCodeValues(t *testing.T) {
	want := map[mpauthx.StatusCode]int{
		mpauthx.StatusSuccess: 1, mpauthx.StatusDatabaseError: 6000, mpauthx.StatusRequiredParamsMissing: 6001,
		mpauthx.StatusHTTPError: 6002, mpauthx.StatusResponseIsNull: 6003, mpauthx.StatusJSONParseError: 6004,
		mpauthx.StatusHTTPResponseError: 6005, mpauthx.StatusHTTPRequestError: 6006, mpauthx.StatusInvalidAccessToken: 6007,
		mpauthx.StatusSessionKeyRequestError: 6008, mpauthx.StatusOpenIDMismatch: 6009, mpauthx.StatusUserNotExist: 6010,
		mpauthx.StatusDecryptError: 6011, mpauthx.StatusAccessTokenError: 6012,
		mpauthx.StatusPhoneNumberError: 6013, mpauthx.StatusSessionKeyMissing: 6014, mpauthx.StatusUnknownError: 9999,
	}
	seen := map[string]bool{}
	for c, v := range want {
		if int(c) != v {
			t.Errorf("%s = %d, want %d", c.Message(), int(c), v)
		}
		if seen[c.Message()] {
			t.Errorf("message %q used twice", c.Message())
		}
		seen[c.Message()] = true
	}
}

func TestExtract(t *testing.T) {
	var c mpauthx.Client
	tests := []struct{ token, openID, sku string }{
		{"o1|sku|sess", "o1", "sku"},
		{"o1|sku", "o1", ""},
		{"o1|sku|sess|x", "o1", ""},
		{"nobar", "", ""},
		{"", "", ""},
		{"|sku|sess", "", "sku"},
		{"o1||sess", "o1", ""},
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

// TestNoSecretLeaks drives every failure path with a logger attached and
// scans errors, Results and log lines for the app secret and session keys.
func TestNoSecretLeaks(t *testing.T) {
	// Each backend's Client logs to a capture of its own (forEachRedis
	// calls the tweak, then the body, backend after backend), so that the
	// checks below see only this backend's lines.
	var logs *logBuffer
	forEachRedis(t, func(c *mpauthx.Config) { c.Logger, logs = captureLogs(false) }, func(t *testing.T, e *env) {
		u := e.user("uma")
		data, iv := e.wx.UserInfo(u.OpenID)
		token := e.login(t, u)
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		deadClient := e.client(t, func(c *mpauthx.Config) { c.APIBase = dead.URL })
		var errs []error
		add := func(_ mpauthx.Result, err error) { errs = append(errs, err) }
		add(deadClient.AuthorizeCode(bg, "code"))
		for _, f := range []mpauthxtest.Fault{
			{Status: 500, Body: []byte(e.wx.AppSecret)}, {Body: []byte{}}, {Body: []byte("nope")},
			{ErrCode: 40029, ErrMsg: "bad code for secret " + e.wx.AppSecret},
			{Body: []byte(`{"openid":"x|y","session_key":"` + u.SessionKey + `"}`)},
		} {
			e.wx.FailNext(1, f)
			add(e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)))
		}
		e.wx.FailNext(4, mpauthxtest.Fault{ErrCode: -1})
		add(e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)))
		add(e.c.Authorize(bg, e.wx.Code(u.OpenID), data, "AAAAAAAAAAAAAAAAAAAAAA=="))
		add(e.c.Authorize(bg, e.wx.Code(u.OpenID), "x"+data, iv))
		ctx, cancel := context.WithCancel(bg)
		cancel()
		add(e.c.AuthorizeCode(ctx, e.wx.Code(u.OpenID)))
		_, err := e.c.IsTokenValid(ctx, token)
		errs = append(errs, err)
		errs = append(errs, e.c.RevokeToken(ctx, token))
		secrets := []string{e.wx.AppSecret, u.SessionKey, token, token[strings.LastIndexByte(token, '|')+1:]}
		for i, err := range errs {
			if err == nil {
				t.Fatalf("case %d: no error", i)
			}
			res, _ := json.Marshal(mpauthx.ErrorResult(err))
			text := fmt.Sprintf("%v|%+v|%#v|%s", err, err, mpauthx.ErrorResult(err), res)
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("case %d leaks %q: %s", i, s, text)
				}
			}
		}
		out := logs.String()
		// Every failure above but the cancelled ones is logged.
		if n := strings.Count(out, "\n"); n < len(errs)-3 {
			t.Fatalf("%d lines logged for %d failures: the scan proves little:\n%s", n, len(errs), out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("log leaks %q:\n%s", s, out)
			}
		}
	})
}

// TestRedisKeysHaveTTL checks the storage layout: per user and Sku, the
// token's key and the sealed session key's, always with a TTL.
func TestRedisKeysHaveTTL(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		var ids []string
		for i := range 5 {
			u := e.user(fmt.Sprint("v", i))
			e.login(t, u)
			ids = append(ids, u.OpenID)
		}
		if _, err := e.c.RefreshToken(bg, ids[0]); err != nil {
			t.Fatalf("RefreshToken: %v", err)
		}
		for _, id := range ids {
			for _, k := range []string{e.key(id), e.skKey(id)} {
				ttl, err := e.rdb.PTTL(bg, k).Result()
				if err != nil || ttl <= 0 {
					t.Fatalf("key %s: PTTL %v, %v", k, ttl, err)
				}
			}
		}
		if e.mr != nil {
			// And the registry of Skus, without a TTL (deleteuser.go).
			if n := len(e.mr.Keys()); n != 2*len(ids)+1 {
				t.Fatalf("%d keys for %d users: %v", n, len(ids), e.mr.Keys())
			}
			if skus, err := e.rdb.SMembers(bg, skuRegistryKey).Result(); err != nil || !slices.Equal(skus, []string{e.cfg.Sku}) {
				t.Fatalf("the registry of Skus holds %q, %v; want this Sku", skus, err)
			}
		}
	})
}

var _ redis.UniversalClient = (*redis.ClusterClient)(nil)

// TestLogLevels checks what a failure logs: nothing for the caller's own
// mistakes and cancellations, Info for a reused or invalid code, Warn for
// what points at the service.
func TestLogLevels(t *testing.T) {
	var logs *logBuffer // this backend's (see TestNoSecretLeaks)
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.Logger, logs = captureLogs(false) }, func(t *testing.T, e *env) {
		u := e.user("lou")
		used := e.wx.Code(u.OpenID)
		if _, err := e.c.AuthorizeCode(bg, used); err != nil {
			t.Fatal(err)
		}
		canceled, cancel := context.WithCancel(bg)
		cancel()
		tests := []struct {
			name string
			call func() error
			want string // "" means nothing logged
		}{
			{"missing code", func() error { _, err := e.c.AuthorizeCode(bg, ""); return err }, ""},
			{"unknown user", func() error { _, err := e.c.RefreshToken(bg, "nobody"); return err }, ""},
			{"cancelled ctx", func() error { _, err := e.c.AuthorizeCode(canceled, e.wx.Code(u.OpenID)); return err }, ""},
			{"reused code", func() error { _, err := e.c.AuthorizeCode(bg, used); return err }, "level=INFO"},
			{"unknown code", func() error { _, err := e.c.AuthorizeCode(bg, "no-such-code"); return err }, "level=INFO"},
			{"no session key", func() error { _, err := e.c.Decrypt(bg, "o-never-logged-in", "AAAA", "AAAA"); return err }, "level=INFO"},
			{"WeChat 500", func() error {
				e.wx.FailNext(1, mpauthxtest.Fault{Status: http.StatusInternalServerError})
				_, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				return err
			}, "level=WARN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				logs.Reset()
				if err := tt.call(); err == nil {
					t.Fatal("call succeeded")
				}
				got := logs.String()
				switch {
				case tt.want == "" && got != "":
					t.Fatalf("logged %q, want nothing", got)
				case tt.want != "" && (strings.Count(got, "\n") != 1 || !strings.Contains(got, tt.want)):
					t.Fatalf("logged %q, want one line with %s", got, tt.want)
				}
			})
		}
	})
}

// TestRing runs the token calls on a *redis.Ring, whose reads are plain
// GETs (go-redis cannot autopipeline a Ring).
func TestRing(t *testing.T) {
	e := newEnv(t, ringBackend, nil)
	u := e.user("rin")
	token := e.login(t, u)
	if !e.valid(t, token) {
		t.Fatal("fresh token is not valid")
	}
	res, err := e.c.RefreshToken(bg, u.OpenID)
	if err != nil {
		t.Fatal(err)
	}
	if e.valid(t, token) || !e.valid(t, res.Response) {
		t.Fatal("RefreshToken did not replace the token")
	}
	if err := e.c.RevokeToken(bg, res.Response); err != nil || e.valid(t, res.Response) {
		t.Fatalf("RevokeToken: %v; token still valid", err)
	}
	if err := e.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.rdb.Ping(bg).Err(); err != nil {
		t.Fatalf("Close closed the caller's Ring: %v", err)
	}
}
