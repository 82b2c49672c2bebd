package mpauthx_test

import (
	"strings"
	"testing"
	"time"

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
