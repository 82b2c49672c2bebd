package mpauthx

import (
	"context"
	"time"
)

// SetClock makes now the clock c's access token logic reads, so that a
// test can move time on without waiting. Call it before c's first call.
func SetClock(c *Client, now func() time.Time) { c.clock = now }

// Issue runs the last step of a login of userID, whose code2session gave
// openID and sessionKey: the token and the sealed session key, stored in
// one script. Tests call it in tight loops that a round trip to the fake
// WeChat would slow down.
func Issue(ctx context.Context, c *Client, userID, openID, sessionKey string) (Result, error) {
	return c.issue(ctx, userID, session{openID: openID, sessionKey: sessionKey})
}

// ForgetAccessToken drops c's in-process copy of the access token, as a
// new instance starts without one.
func ForgetAccessToken(c *Client) { c.at.cur.Store(nil) }
