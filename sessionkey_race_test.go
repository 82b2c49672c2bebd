package mpauthx_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
)

// TestLoginInTokensLastMillisecond: a login that finds the user's token
// in the very millisecond it ends (PTTL 0, the key not yet expired) gets a
// token, never an error: the session key cannot be stored with a TTL of
// 0 ms (SET ... PX 0 is an error), so the token is replaced. Real Redis
// reaches that millisecond in a loop of logins around the token's end;
// miniredis is moved past it.
func TestLoginInTokensLastMillisecond(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		sk := u.SessionKey
		const old = "AAAAAAAAAAAAAAAAAAAAAAAAAA" // a session of the token that ends
		for round := range 20 {
			if err := e.rdb.Set(bg, e.key(u.OpenID), old, 3*time.Millisecond).Err(); err != nil {
				t.Fatal(err)
			}
			for calls := 0; ; calls++ {
				if e.mr != nil && calls == 1 {
					e.mr.FastForward(3 * time.Millisecond)
				}
				res, err := mpauthx.Issue(bg, e.c, u.OpenID, u.OpenID, sk)
				if err != nil {
					t.Fatalf("round %d: a login as the token ends: %v", round, err)
				}
				if !strings.HasSuffix(res.Response, "|"+old) {
					if !e.valid(t, res.Response) {
						t.Fatalf("round %d: the new token %q is not valid", round, res.Response)
					}
					break
				}
				if calls > 1e6 {
					t.Fatalf("round %d: the token did not end", round)
				}
			}
			tok, skTTL := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(), e.rdb.PTTL(bg, e.skKey(u.OpenID)).Val()
			if skTTL <= 0 || skTTL > tok {
				t.Fatalf("round %d: session key's PTTL %v, token's %v", round, skTTL, tok)
			}
			e.rdb.Del(bg, e.key(u.OpenID), e.skKey(u.OpenID))
		}
	})
}

// TestFirstLoginsAcrossInstancesAndFlows: one new WeChat user, whose
// unionid only Authorize learns (from encryptedData), logs in at the same
// moment on four instances through Authorize, AuthorizeCode and
// AuthorizePhone: one row, one user ID, one token for all, the phone
// recorded on that row, and a session key that opens the user's payloads.
func TestFirstLoginsAcrossInstancesAndFlows(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		cs := []*mpauthx.Client{e.c}
		for range 3 {
			cs = append(cs, e.client(t, func(*mpauthx.Config) {}))
		}
		for round := range 4 {
			u := e.phoneUser("13800138000", "")
			u.UnionID = "u" + u.OpenID
			u.OmitUnionIDInSession = true
			u = e.wx.AddUser(u)
			rows := e.userRows(t)
			const n = 12
			toks := make([]string, n)
			concurrently(n, func(i int) {
				c := cs[i%len(cs)]
				var res mpauthx.Result
				var err error
				switch (i + round) % 3 {
				case 0:
					data, iv := e.wx.UserInfo(u.OpenID)
					res, err = c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
				case 1:
					res, err = c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				default:
					res, err = c.AuthorizePhone(bg, e.wx.Code(u.OpenID), e.wx.PhoneCode(u.OpenID))
				}
				if err != nil {
					t.Errorf("round %d, login %d: %v", round, i, err)
				}
				toks[i] = res.Response
			})
			for i, tok := range toks {
				if tok != toks[0] {
					t.Fatalf("round %d: login %d got %q, login 0 %q", round, i, tok, toks[0])
				}
			}
			if n := e.userRows(t) - rows; n != 1 {
				t.Fatalf("round %d: %d rows added, want 1", round, n)
			}
			id := e.c.ExtractOpenID(toks[0])
			got, err := cs[round%len(cs)].User(bg, id)
			if err != nil || got.OpenID != u.OpenID || got.Phone != u.Phone {
				t.Errorf("round %d: User(%q) = %+v, %v", round, id, got, err)
			}
			data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
			if _, err := cs[(round+1)%len(cs)].Decrypt(bg, id, data, iv); err != nil {
				t.Errorf("round %d: Decrypt: %v", round, err)
			}
			// Every later login, by any flow, keeps that ID.
			res, err := cs[0].AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if err != nil || res.Response != toks[0] {
				t.Errorf("round %d: a later login = %+v, %v; want the same token", round, res, err)
			}
		}
	})
}

// TestSessionKeyFollowsTokenUnderRaces: logins (some with a new session
// key from WeChat), RefreshToken and RevokeToken of one user race on
// four instances; afterwards the sealed session key lives exactly as
// long as the token: gone with it, never a millisecond longer (read in
// one MULTI), there after any login, and it opens the payloads of
// WeChat's current key once a login has followed the last rotation.
func TestSessionKeyFollowsTokenUnderRaces(t *testing.T) {
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.TokenTTL = time.Hour }, func(t *testing.T, e *env) {
		cs := []*mpauthx.Client{e.c}
		for range 3 {
			cs = append(cs, e.client(t, func(*mpauthx.Config) {}))
		}
		u := e.phoneUser("13800138000", "")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		// check checks the TTLs; a token without a session key is
		// allowed only when no login followed the races (a RefreshToken
		// after a RevokeToken issues a token no login gave a key for).
		check := func(round int, loggedIn bool) {
			t.Helper()
			tok, sk := e.pttls(t, u.OpenID)
			switch {
			case tok == -2 && sk == -2: // both gone
			case tok > 0 && sk == -2 && !loggedIn:
			case tok > 0 && sk > 0 && sk <= tok && tok-sk < time.Second: // miniredis loses the time a script takes
			default:
				t.Fatalf("round %d: token's PTTL %v, session key's %v", round, tok, sk)
			}
		}
		for round := range 6 {
			if round%2 == 1 {
				e.wx.SetSessionKey(u.OpenID, "") // WeChat rotates the key
			}
			concurrently(16, func(i int) {
				c := cs[i%len(cs)]
				var err error
				switch i % 4 {
				case 0, 1:
					_, err = c.AuthorizeCode(bg, e.wx.Code(u.OpenID))
				case 2:
					_, err = c.RefreshToken(bg, u.OpenID)
				default:
					var res mpauthx.Result
					if res, err = c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err == nil {
						err = c.RevokeToken(bg, res.Response)
					}
				}
				if err != nil {
					t.Errorf("round %d, call %d: %v", round, i, err)
				}
			})
			check(round, false)
			// A login after the races: the current key, the same TTL.
			res, err := cs[round%len(cs)].AuthorizeCode(bg, e.wx.Code(u.OpenID))
			if err != nil {
				t.Fatal(err)
			}
			check(round, true)
			data, iv := e.wx.EncryptFor(u.OpenID, weRun(e.wx.AppID))
			if _, err := cs[(round+1)%len(cs)].Decrypt(bg, u.OpenID, data, iv); err != nil {
				t.Errorf("round %d: Decrypt after a login = %v", round, err)
			}
			if ok, err := cs[(round+2)%len(cs)].CheckSessionKey(bg, u.OpenID); !ok || err != nil {
				t.Errorf("round %d: CheckSessionKey after a login = %t, %v", round, ok, err)
			}
			if !e.valid(t, res.Response) {
				t.Errorf("round %d: the login's token is not valid", round)
			}
		}
	})
}

// pttls returns the PTTLs of userID's token and session key, read in one
// MULTI (the keys share a slot), at one moment.
func (e *env) pttls(t *testing.T, userID string) (token, sessionKey time.Duration) {
	t.Helper()
	var tok, sk *redis.DurationCmd
	if _, err := e.rdb.TxPipelined(bg, func(p redis.Pipeliner) error {
		tok, sk = p.PTTL(bg, e.key(userID)), p.PTTL(bg, e.skKey(userID))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return tok.Val(), sk.Val()
}

// TestSessionKeyNeverOutlivesToken: a login that finds the user's live
// token, and RefreshToken, give the session key the token's expiry, not
// a TTL read a moment earlier: before Redis 7.2 the clock moves during a
// script, so a millisecond passing between the token's PTTL and the
// session key's SET would let the key outlive the token. Many tries make
// such a millisecond likely.
func TestSessionKeyNeverOutlivesToken(t *testing.T) {
	forEachRedis(t, func(cfg *mpauthx.Config) { cfg.TokenTTL = time.Hour }, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			var err error
			if i%2 == 0 {
				_, err = mpauthx.Issue(bg, e.c, u.OpenID, u.OpenID, u.SessionKey)
			} else {
				_, err = e.c.RefreshToken(bg, u.OpenID)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok, sk := e.pttls(t, u.OpenID); sk > tok || sk <= 0 {
				t.Fatalf("call %d: session key's PTTL %v, token's %v", i, sk, tok)
			}
		}
	})
}
