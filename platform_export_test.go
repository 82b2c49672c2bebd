package mpauthx

import "time"

// SetAccessToken makes token c's access token for the next hour, as if c
// had fetched it: the tests of Douyin's phone numbers hand a Douyin Client
// a token the fake server accepts.
func SetAccessToken(c *Client, token string) {
	now := c.now()
	c.at.cur.Store(&accessToken{token: token, expiry: now.Add(time.Hour), refreshAt: now.Add(time.Hour)})
}
