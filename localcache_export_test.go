package mpauthx

// Hooks into the local cache for the tests and benchmarks of package
// mpauthx_test.

// CacheHolds reports whether c's local cache answers token without Redis
// right now.
func CacheHolds(c *Client, token string) bool {
	userID, s, ok := c.parse(token)
	return ok && c.cache.hit(userID, s)
}

// CacheLen returns the number of entries in c's local cache, or -1 when
// c has none.
func CacheLen(c *Client) int {
	if c.cache == nil {
		return -1
	}
	return c.cache.len()
}

// CacheLinkUps returns how many times c's local cache started answering
// after its link (re)connected: each time, it was empty first.
func CacheLinkUps(c *Client) int64 { return c.cache.ups.Load() }
