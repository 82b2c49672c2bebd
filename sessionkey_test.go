package mpauthx_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// skKey is the documented Redis key of the hash of userID's sealed
// session keys, a field per AppID.
func (e *env) skKey(userID string) string {
	return "mpauthx:{" + userID + "|" + e.cfg.Sku + "}:sks"
}

// weRun is a payload as wx.getWeRunData gives it, for the app appID.
func weRun(appID string) []byte {
	return []byte(`{"stepInfoList":[{"timestamp":1445866601,"step":100}],"watermark":{"timestamp":1445866601,"appid":"` + appID + `"}}`)
}

// TestDecrypt: every login keeps the user's latest session key, with
// which Decrypt opens the payloads the mini program fetches afterwards.
func TestDecrypt(t *testing.T) {
	logins := []struct {
		name  string
		login func(e *env, u mpauthxtest.User) (mpauthx.Result, error)
	}{
		{"Authorize", func(e *env, u mpauthxtest.User) (mpauthx.Result, error) {
			data, iv := e.wx.UserInfo(u.OpenID)
			return e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
		}},
		{"AuthorizeCode", func(e *env, u mpauthxtest.User) (mpauthx.Result, error) {
			return e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		}},
		{"AuthorizePhone", func(e *env, u mpauthxtest.User) (mpauthx.Result, error) {
			return e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
		}},
	}
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		for _, l := range logins {
			t.Run(l.name, func(t *testing.T) {
				u := e.phoneUser("13800138000", "")
				data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
				if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
					t.Errorf("Decrypt before any login = %v, want 6014", err)
				}
				res, err := l.login(e, u)
				if err != nil {
					t.Fatal(err)
				}
				plain, err := e.c.Decrypt(bg, u.OpenID, data, iv)
				if err != nil || string(plain) != string(weRun(e.wx.AppID)) {
					t.Fatalf("Decrypt = %q, %v", plain, err)
				}

				// WeChat rotates the key; the next login keeps the new one,
				// even though it returns the live token.
				e.wx.SetSessionKey(u.OpenID, "")
				data2, iv2 := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
				if _, err := e.c.Decrypt(bg, u.OpenID, data2, iv2); mpauthx.Code(err) != mpauthx.StatusDecryptError {
					t.Errorf("Decrypt with a rotated key = %v, want 6011", err)
				}
				res2, err := l.login(e, u)
				if err != nil || res2.Response != res.Response {
					t.Fatalf("second login = %+v, %v; want the live token", res2, err)
				}
				if plain, err := e.c.Decrypt(bg, u.OpenID, data2, iv2); err != nil || string(plain) != string(weRun(e.wx.AppID)) {
					t.Errorf("Decrypt after the second login = %q, %v", plain, err)
				}
			})
		}

		u := e.phoneUser("13800138000", "")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		good, goodIV := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
		otherApp, otherIV := e.wx.EncryptFor(u.OpenID, weRun("wx-other-app"))
		notJSON, notJSONIV := e.wx.EncryptFor(u.OpenID, []byte("not json"))
		bad := []struct {
			name, userID, data, iv string
			want                   mpauthx.StatusCode
		}{
			{"no userID", "", good, goodIV, mpauthx.StatusRequiredParamsMissing},
			{"no data", u.OpenID, "", goodIV, mpauthx.StatusRequiredParamsMissing},
			{"no iv", u.OpenID, good, "", mpauthx.StatusRequiredParamsMissing},
			{"bad userID", "a|b", good, goodIV, mpauthx.StatusRequiredParamsMissing},
			{"unknown user", "o-nobody", good, goodIV, mpauthx.StatusSessionKeyMissing},
			{"another app's watermark", u.OpenID, otherApp, otherIV, mpauthx.StatusDecryptError},
			{"not JSON", u.OpenID, notJSON, notJSONIV, mpauthx.StatusDecryptError},
			{"bad base64", u.OpenID, "%%%", goodIV, mpauthx.StatusDecryptError},
			{"wrong iv", u.OpenID, good, otherIV, mpauthx.StatusDecryptError},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				if plain, err := e.c.Decrypt(bg, tt.userID, tt.data, tt.iv); mpauthx.Code(err) != tt.want || plain != nil {
					t.Errorf("Decrypt = %q, %v; want code %d", plain, err, tt.want)
				}
			})
		}
	})
}

// TestSessionKeyLifetime: the sealed key lives as long as the user's
// token: the login's TTL, extended by RefreshToken, ended by RevokeToken.
func TestSessionKeyLifetime(t *testing.T) {
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.TokenTTL = time.Hour }, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		sameTTL := func(when string) {
			t.Helper()
			tok, sk := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(), e.rdb.PTTL(bg, e.skKey(u.OpenID)).Val()
			if sk <= 0 || tok-sk > time.Second || sk-tok > time.Second {
				t.Errorf("%s: session key's PTTL %v, token's %v; want the same", when, sk, tok)
			}
		}
		sameTTL("after the login")
		e.rdb.PExpire(bg, e.key(u.OpenID), time.Minute)
		e.rdb.PExpire(bg, e.skKey(u.OpenID), time.Minute)
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		sameTTL("after a second login")
		if ttl := e.rdb.PTTL(bg, e.skKey(u.OpenID)).Val(); ttl > time.Minute {
			t.Errorf("a second login extended the session key to %v, want the token's minute", ttl)
		}
		res, err = e.c.RefreshToken(bg, u.OpenID)
		if err != nil {
			t.Fatal(err)
		}
		sameTTL("after RefreshToken")
		if ttl := e.rdb.PTTL(bg, e.skKey(u.OpenID)).Val(); ttl < 59*time.Minute {
			t.Errorf("RefreshToken left the session key %v, want the token's hour", ttl)
		}
		if ok, err := e.c.CheckSessionKey(bg, u.OpenID); !ok || err != nil {
			t.Errorf("CheckSessionKey after RefreshToken = %t, %v", ok, err)
		}
		if err := e.c.RevokeToken(bg, res.Response); err != nil {
			t.Fatal(err)
		}
		if n := e.rdb.Exists(bg, e.skKey(u.OpenID)).Val(); n != 0 {
			t.Error("RevokeToken left the session key")
		}
		if _, err := e.c.CheckSessionKey(bg, u.OpenID); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("CheckSessionKey after RevokeToken = %v, want 6014", err)
		}
	})
}

// TestSessionKeySealed: Redis never holds the session key in clear, and a
// sealed key moved to another user's key or another app's field, or kept
// under another app secret, does not open.
func TestSessionKeySealed(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		alice, bob := e.phoneUser("13800138000", ""), e.phoneUser("13900139000", "")
		for _, u := range []mpauthxtest.User{alice, bob} {
			if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
				t.Fatal(err)
			}
		}
		raw, err := e.rdb.HGet(bg, e.skKey(alice.OpenID), e.cfg.AppID).Result()
		if err != nil {
			t.Fatal(err)
		}
		key, _ := base64.StdEncoding.DecodeString(alice.SessionKey)
		if strings.Contains(raw, alice.SessionKey) || strings.Contains(raw, string(key)) || strings.Contains(raw, alice.OpenID) {
			t.Error("Redis holds the session key or openid in clear")
		}
		// Alice's sealed key copied to Bob's key: Bob has none now.
		if err := e.rdb.HSet(bg, e.skKey(bob.OpenID), e.cfg.AppID, raw).Err(); err != nil {
			t.Fatal(err)
		}
		data, iv := e.wx.EncryptFor(alice.OpenID, weRun(e.wx.AppID))
		if _, err := e.c.Decrypt(bg, bob.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt with Alice's key moved to Bob = %v, want 6014", err)
		}
		// Alice's sealed key copied to another app's field, read by a
		// Client of that app with the same AppSecret: it does not open.
		other := e.client(t, func(cfg *mpauthx.Config) { cfg.AppID = "wx-other-app" })
		if err := e.rdb.HSet(bg, e.skKey(alice.OpenID), "wx-other-app", raw).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Decrypt(bg, alice.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt of Alice's key moved to another app's field = %v, want 6014", err)
		}
		// Another AppSecret (rotated): the key does not open.
		rotated := e.client(t, func(cfg *mpauthx.Config) { cfg.AppSecret = "another-secret" })
		if _, err := rotated.Decrypt(bg, alice.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt under another secret = %v, want 6014", err)
		}
		if plain, err := e.c.Decrypt(bg, alice.OpenID, data, iv); err != nil || len(plain) == 0 {
			t.Errorf("Decrypt of Alice's own = %q, %v", plain, err)
		}
	})
}

func TestCheckSessionKey(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		if _, err := e.c.CheckSessionKey(bg, u.OpenID); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("CheckSessionKey before any login = %v, want 6014", err)
		}
		if _, err := e.c.CheckSessionKey(bg, ""); mpauthx.Code(err) != mpauthx.StatusRequiredParamsMissing {
			t.Errorf(`CheckSessionKey("") = %v, want 6001`, err)
		}
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.c.CheckSessionKey(bg, u.OpenID); !ok || err != nil {
			t.Errorf("CheckSessionKey after the login = %t, %v; want true", ok, err)
		}
		// WeChat ends the access token: renewed once (in normal mode,
		// which hands out the next token), answered.
		e.wx.ExpireAccessToken()
		reqs := e.wx.AccessTokenRequests()
		if ok, err := e.c.CheckSessionKey(bg, u.OpenID); !ok || err != nil || e.wx.AccessTokenRequests() != reqs+1 {
			t.Errorf("CheckSessionKey after WeChat ended the token = %t, %v after %d stable_token calls; want true after 1", ok, err, e.wx.AccessTokenRequests()-reqs)
		}
		e.wx.SetSessionKey(u.OpenID, "")
		if ok, err := e.c.CheckSessionKey(bg, u.OpenID); ok || err != nil {
			t.Errorf("CheckSessionKey after WeChat rotated the key = %t, %v; want false, nil", ok, err)
		}
		e.wx.FailNextAt(mpauthxtest.CheckSessionPath, 1, mpauthxtest.Fault{ErrCode: -1})
		_, err := e.c.CheckSessionKey(bg, u.OpenID)
		var we *mpauthx.WeChatError
		if mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError || !errors.As(err, &we) || we.ErrCode != -1 {
			t.Errorf("CheckSessionKey with WeChat busy = %v, want 6008 wrapping errcode -1", err)
		}
		e.wx.FailNextAt(mpauthxtest.CheckSessionPath, 1, mpauthxtest.Fault{Status: 502})
		if _, err := e.c.CheckSessionKey(bg, u.OpenID); mpauthx.Code(err) != mpauthx.StatusSessionKeyRequestError {
			t.Errorf("CheckSessionKey with WeChat down = %v, want 6008", err)
		}
	})
}

// TestBraceUserID: a user ID starting with '}' (an empty hash tag, which
// Redis ignores) logs in, refreshes and logs out on every backend,
// Cluster included; it has no session key, which Decrypt reports.
func TestBraceUserID(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.wx.AddUser(mpauthxtest.User{OpenID: "}{o-" + e.cfg.Sku})
		res, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
		if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt = %v, want 6014", err)
		}
		if res, err = e.c.RefreshToken(bg, u.OpenID); err != nil {
			t.Fatal(err)
		}
		if err := e.c.RevokeToken(bg, res.Response); err != nil || e.valid(t, res.Response) {
			t.Errorf("RevokeToken = %v", err)
		}
	})
}

// TestSessionKeyRedisDown: with Redis down, Decrypt and CheckSessionKey
// fail with 6000, and work again when it is back.
func TestSessionKeyRedisDown(t *testing.T) {
	e := newEnv(t, backends()[0], nil)
	u := e.phoneUser("13800138000", "")
	if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
		t.Fatal(err)
	}
	data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
	e.mr.SetError("LOADING Redis is loading the dataset in memory")
	if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
		t.Errorf("Decrypt with Redis failing = %v, want 6000", err)
	}
	if _, err := e.c.CheckSessionKey(bg, u.OpenID); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
		t.Errorf("CheckSessionKey with Redis failing = %v, want 6000", err)
	}
	if _, err := e.c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID)); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
		t.Errorf("AuthorizePhone with Redis failing = %v, want 6000", err)
	}
	e.mr.SetError("")
	if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); err != nil {
		t.Errorf("Decrypt after Redis healed = %v", err)
	}
}

// otherApp returns a second WeChat mini program (its own fake WeChat,
// AppID and AppSecret) and its Client, sharing e's Redis, database and
// Sku, as a business with two mini programs runs them.
func (e *env) otherApp(t *testing.T, name string) (*mpauthxtest.Server, *mpauthx.Client) {
	t.Helper()
	wx := mpauthxtest.NewServer("wx-"+name+"-"+rand.Text()[:8], "s3cr3t-"+name)
	t.Cleanup(wx.Close)
	return wx, e.client(t, func(cfg *mpauthx.Config) {
		cfg.AppID, cfg.AppSecret, cfg.APIBase = wx.AppID, wx.AppSecret, wx.URL
	})
}

// TestSessionKeysPerApp: two mini programs sharing a Redis and a Sku
// keep their own session key for one user (a unionid user, who has one
// ID and one token in both): a login through one app does not overwrite
// the other's, RefreshToken (through either) keeps both alive with the
// token, and RevokeToken ends both.
func TestSessionKeysPerApp(t *testing.T) {
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.TokenTTL = time.Hour }, func(t *testing.T, e *env) {
		wxB, b := e.otherApp(t, "b")
		unionID := "u-both-" + rand.Text()[:8]
		inA := e.wx.AddUser(mpauthxtest.User{OpenID: "o-a-" + rand.Text()[:8], UnionID: unionID})
		inB := wxB.AddUser(mpauthxtest.User{OpenID: "o-b-" + rand.Text()[:8], UnionID: unionID})
		ra, err := e.c.AuthorizeCode(bg, e.wx.Code(inA.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.AuthorizeCode(bg, wxB.Code(inB.OpenID))
		if err != nil {
			t.Fatal(err)
		}
		if ra.Response != rb.Response || e.c.ExtractOpenID(ra.Response) != unionID {
			t.Fatalf("the two apps' logins got %q and %q; want one token of %q", ra.Response, rb.Response, unionID)
		}
		decrypts := func(when string) {
			t.Helper()
			for _, app := range []struct {
				name string
				wx   *mpauthxtest.Server
				c    *mpauthx.Client
				u    mpauthxtest.User
			}{{"A", e.wx, e.c, inA}, {"B", wxB, b, inB}} {
				data, iv := app.wx.EncryptFor(app.u.OpenID, weRun(app.wx.AppID))
				if plain, err := app.c.Decrypt(bg, unionID, data, iv); err != nil || string(plain) != string(weRun(app.wx.AppID)) {
					t.Errorf("%s: app %s's Decrypt = %q, %v; want its own session key", when, app.name, plain, err)
				}
				if ok, err := app.c.CheckSessionKey(bg, unionID); !ok || err != nil {
					t.Errorf("%s: app %s's CheckSessionKey = %t, %v", when, app.name, ok, err)
				}
			}
		}
		decrypts("after logins through A then B")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(inA.OpenID)); err != nil {
			t.Fatal(err)
		}
		decrypts("after A again")
		e.rdb.PExpire(bg, e.key(unionID), time.Minute)
		e.rdb.PExpire(bg, e.skKey(unionID), time.Minute)
		res, err := b.RefreshToken(bg, unionID)
		if err != nil {
			t.Fatal(err)
		}
		if ttl := e.rdb.PTTL(bg, e.skKey(unionID)).Val(); ttl < 59*time.Minute {
			t.Errorf("RefreshToken left the session keys %v, want the token's hour", ttl)
		}
		decrypts("after RefreshToken")
		if err := e.c.RevokeToken(bg, res.Response); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*mpauthx.Client{e.c, b} {
			if _, err := c.CheckSessionKey(bg, unionID); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
				t.Errorf("CheckSessionKey after RevokeToken = %v, want 6014", err)
			}
		}
	})
}

// TestSessionKeysForeignType: a key of another type where the session
// keys go (not written by mpauthx) is no session key, and a login
// replaces it.
func TestSessionKeysForeignType(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		if err := e.rdb.Set(bg, e.skKey(u.OpenID), "not a hash", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
		if _, err := e.c.Decrypt(bg, u.OpenID, data, iv); mpauthx.Code(err) != mpauthx.StatusSessionKeyMissing {
			t.Errorf("Decrypt with a string at the session keys' key = %v, want 6014", err)
		}
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		if plain, err := e.c.Decrypt(bg, u.OpenID, data, iv); err != nil || string(plain) != string(weRun(e.wx.AppID)) {
			t.Errorf("Decrypt after the login = %q, %v", plain, err)
		}
	})
}
