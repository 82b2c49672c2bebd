package mpauthx_test

import (
	"testing"
	"time"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// TestAccessTokenFailureFromSkewedClock: a failed refresh is shared
// through Redis with the end of its back-off, read on the recording
// instance's clock. An instance whose clock runs an hour ahead must not
// make the others refuse the access token for that hour: another
// instance backs off at most the longest back-off (30 s) from when it
// reads the failure, and once Redis has let the record go (its lifetime
// is the back-off and a minute), it asks WeChat again.
func TestAccessTokenFailureFromSkewedClock(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		ahead, right := newFakeClock(), newFakeClock()
		ahead.add(time.Hour)
		a := e.instances(t, 1, ahead)[0]
		b := e.instances(t, 1, right)[0]

		e.wx.FailNextAt(mpauthxtest.StableTokenPath, 1, mpauthxtest.Fault{ErrCode: mpauthx.ErrCodeInvalidSecret})
		if _, err := a.AccessToken(bg); mpauthx.Code(err) != mpauthx.StatusAccessTokenError {
			t.Fatalf("the skewed instance's failing refresh: %v", err)
		}
		// Within the back-off, b takes a's failure without asking WeChat.
		calls := e.wx.AccessTokenRequests()
		if _, err := b.AccessToken(bg); mpauthx.Code(err) != mpauthx.StatusAccessTokenError || e.wx.AccessTokenRequests() != calls {
			t.Fatalf("b during the back-off: %v after %d stable_token calls, want the shared failure and none", err, e.wx.AccessTokenRequests()-calls)
		}
		// 91 s later the record has gone from Redis (it lived at most the
		// 30 s back-off and a minute) and the fault is over.
		right.add(91 * time.Second)
		e.rdb.Del(bg, e.appKey("access_token:failed"))
		if tok, err := b.AccessToken(bg); err != nil || tok != e.wx.AccessToken() {
			t.Fatalf("b 91 s after another instance's failure = %q, %v; want WeChat's token: a clock an hour ahead kept b backing off", tok, err)
		}
	})
}
