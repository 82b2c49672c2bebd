//go:build !unix

package mpauthx_test

// ownRedisBackend is redisproc_test.go's on unix: elsewhere the tests do
// not start a redis-server of their own.
func ownRedisBackend() (b backend, ok bool) { return backend{}, false }
