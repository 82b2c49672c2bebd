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
// after a flush (a link (re)connected, a topology change, a database
// swapped): each time, it was empty first.
func CacheLinkUps(c *Client) int64 { return c.cache.ups.Load() }

// SetCacheAfterRead has IsTokenValid on c call f right after its Redis
// read (nil: nothing).
func SetCacheAfterRead(c *Client, f func()) {
	if f == nil {
		c.cache.afterRead.Store(nil)
		return
	}
	c.cache.afterRead.Store(&f)
}

// CacheInvalidated returns how many invalidations of its Sku's session
// keys c's local cache applied.
func CacheInvalidated(c *Client) int64 { return c.cache.invalidated.Load() }

// CacheFilled returns how many positive answers c's local cache took to
// cache (inserted, or refused as too old).
func CacheFilled(c *Client) int64 { return c.cache.filled.Load() }
