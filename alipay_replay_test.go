package mpauthx_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestAlipayPhoneReplayRefused: my.getPhoneNumber's response names no
// user and carries no time, and, encrypted with a zero IV and signed
// deterministically, it is the same string every time for one number.
// A response that leaked (a log, a proxy) must not let its holder record
// the victim's number on their own account: the number is bound to the
// first Alipay user of the app who logs in with it, on every instance,
// for alipayPhoneBinding; that user logs in with it again as often as
// they like, anyone else gets 6013 wrapping ErrAlipayPhoneClaimed and
// nothing is written. Redis holds neither the number nor the response.
func TestAlipayPhoneReplayRefused(t *testing.T) {
	f := newAlipayFake(t)
	forEachRedis(t, f.tweak, func(t *testing.T, e *env) {
		victim := f.user("victim", false)
		attacker := f.user("attacker", false)
		resp := f.srv.AlipayPhoneResponse(victim.OpenID)
		if again := f.srv.AlipayPhoneResponse(victim.OpenID); again != resp {
			t.Fatal("the fake's phone responses differ from one call to the next; Alipay's do not")
		}

		pattern := "mpauthx:alipay_phone:" + f.app.AppID + ":*"
		before := map[string]bool{} // other subtests' bindings, on a shared Redis
		for _, k := range scanKeys(t, e.rdb, pattern) {
			before[k] = true
		}
		res, err := e.c.AuthorizePhone(bg, f.srv.Code(victim.OpenID), resp)
		if err != nil {
			t.Fatalf("the victim's phone login: %v", err)
		}
		victimID := e.c.ExtractOpenID(res.Response)
		rows := e.userRows(t)

		// The attacker replays the victim's response with their own
		// auth code, on this instance and on another.
		other := e.client(t, func(*mpauthx.Config) {}) // another instance: e's Redis and DB
		for name, c := range map[string]*mpauthx.Client{"same instance": e.c, "another instance": other} {
			res, err := c.AuthorizePhone(bg, f.srv.Code(attacker.OpenID), resp)
			wantCode(t, err, mpauthx.StatusPhoneNumberError)
			if !errors.Is(err, mpauthx.ErrAlipayPhoneClaimed) || res.Response != "" {
				t.Fatalf("%s: the attacker's replay = %+v, %v; want 6013 wrapping ErrAlipayPhoneClaimed", name, res, err)
			}
			if strings.Contains(err.Error(), victim.Phone) || strings.Contains(err.Error(), victim.OpenID) {
				t.Fatalf("%s: error %q names the victim", name, err)
			}
		}
		if n := e.userRows(t); n != rows {
			t.Fatalf("%d user rows after the refused replays, want %d: the attacker was written", n, rows)
		}

		// The victim logs in with it again, on either instance.
		for _, c := range []*mpauthx.Client{e.c, other} {
			res, err := c.AuthorizePhone(bg, f.srv.Code(victim.OpenID), resp)
			if err != nil || c.ExtractOpenID(res.Response) != victimID {
				t.Fatalf("the victim's second phone login = %+v, %v", res, err)
			}
		}
		u, err := e.c.User(bg, victimID)
		if err != nil || u.Phone != victim.Phone {
			t.Fatalf("victim = %+v, %v", u, err)
		}

		// PhoneNumber knows no user: it reads the number whoever asks
		// (docs/alipay.md), and binds nothing.
		if p, err := e.c.PhoneNumber(bg, resp); err != nil || p.PurePhoneNumber != victim.Phone {
			t.Fatalf("PhoneNumber = %+v, %v", p, err)
		}

		// Redis holds the binding under mpauthx:, with its lifetime,
		// without the number, the response or the victim's open_id.
		var keys []string
		for _, k := range scanKeys(t, e.rdb, pattern) {
			if !before[k] {
				keys = append(keys, k)
			}
		}
		if len(keys) != 1 {
			t.Fatalf("binding keys %q, want one under mpauthx:alipay_phone:<appid>:", keys)
		}
		val := e.rdb.Get(bg, keys[0]).Val()
		for _, s := range []string{keys[0], val} {
			for _, secret := range []string{victim.Phone, victim.OpenID, resp[10:40]} {
				if strings.Contains(s, secret) {
					t.Fatalf("Redis holds %q in %q", secret, s)
				}
			}
		}
		if ttl := e.rdb.PTTL(bg, keys[0]).Val(); ttl < 89*24*time.Hour || ttl > 90*24*time.Hour {
			t.Fatalf("binding TTL %v, want 90 days", ttl)
		}
	})
}

// TestAlipayPhoneClaimFirstComer: an attacker who replays a response
// before its owner ever logs in with it takes the number for the
// binding's lifetime, and the owner is refused: the binding cannot tell
// who was first in good faith, which is why docs/alipay.md asks for care
// with LinkByPhone. A number of another user of another app is unbound.
func TestAlipayPhoneClaimFirstComer(t *testing.T) {
	f := newAlipayFake(t)
	e := f.client(t, nil)
	owner, first := f.user("owner", false), f.user("first", false)
	resp := f.srv.AlipayPhoneResponse(owner.OpenID)
	if _, err := e.c.AuthorizePhone(bg, f.srv.Code(first.OpenID), resp); err != nil {
		t.Fatalf("the first comer: %v", err)
	}
	if _, err := e.c.AuthorizePhone(bg, f.srv.Code(owner.OpenID), resp); !errors.Is(err, mpauthx.ErrAlipayPhoneClaimed) {
		t.Fatalf("the owner after the first comer: %v, want ErrAlipayPhoneClaimed", err)
	}
	// Redis down: the binding cannot be checked, the login fails with
	// 6000 before anything is written.
	down := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1})
	defer down.Close()
	dc := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = down })
	rows := e.userRows(t)
	if _, err := dc.AuthorizePhone(bg, f.srv.Code(owner.OpenID), resp); mpauthx.Code(err) != mpauthx.StatusDatabaseError {
		t.Fatalf("AuthorizePhone with Redis down = %v, want 6000", err)
	}
	if n := e.userRows(t); n != rows {
		t.Fatalf("%d user rows after a login with Redis down, want %d", n, rows)
	}
	// Another Alipay app of the same Redis binds its own numbers.
	app2 := f.srv.AddApp(mpauthxtest.App{Platform: "alipay", AppID: f.app.AppID + "2"})
	u2 := f.srv.AddUser(mpauthxtest.User{AppID: app2.AppID, OpenID: "083lapp2user", Phone: owner.Phone})
	c2 := e.client(t, func(cfg *mpauthx.Config) {
		cfg.AppID, cfg.PrivateKey, cfg.AlipayPublicKey, cfg.AESKey = app2.AppID, app2.PrivateKey, app2.AlipayPublicKey, app2.AESKey
	})
	if _, err := c2.AuthorizePhone(bg, f.srv.Code(u2.OpenID), f.srv.AlipayPhoneResponse(u2.OpenID)); err != nil {
		t.Fatalf("the number in another app: %v", err)
	}
}
