package mpauthx

import "time"

// SetClock makes now the clock c's access token logic reads, so that a
// test can move time on without waiting. Call it before c's first call.
func SetClock(c *Client, now func() time.Time) { c.clock = now }
