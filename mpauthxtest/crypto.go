package mpauthxtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read does not fail on supported platforms.
		panic("mpauthxtest: crypto/rand: " + err.Error())
	}
	return b
}

// newSessionKey returns a random session key: base64 (standard encoding)
// of 16 random bytes, like the ones WeChat hands out.
func newSessionKey() string {
	return base64.StdEncoding.EncodeToString(randomBytes(16))
}

// newCode returns a random login code. It always contains '+' and '='
// (and often '/'), so a client that forgets to escape js_code in the
// query string fails every time rather than now and then. It never
// contains '|' and is printable ASCII.
func newCode() string {
	return "c+" + base64.StdEncoding.EncodeToString(randomBytes(16))
}

// newAccessToken returns a random access token. Like newCode's, it
// always contains '+', so that a client that puts it in a query string
// without escaping fails every time.
func newAccessToken() string {
	return "AT+" + base64.RawStdEncoding.EncodeToString(randomBytes(48))
}

// newRID returns a request id in the style WeChat appends to errmsg.
func newRID() string {
	return fmt.Sprintf("%08x-%s-%s", uint32(time.Now().Unix()),
		hex.EncodeToString(randomBytes(4)), hex.EncodeToString(randomBytes(4)))
}

// pkcs7Pad pads b to a multiple of size bytes as described in RFC 5652
// section 6.3: always at least one byte, at most size bytes.
func pkcs7Pad(b []byte, size int) []byte {
	n := size - len(b)%size
	out := make([]byte, len(b), len(b)+n)
	copy(out, b)
	for range n {
		out = append(out, byte(n))
	}
	return out
}

// encryptCBC encrypts plaintext with AES-128-CBC under the base64
// session key and a fresh random iv, with PKCS#7 padding. It returns the
// ciphertext and the iv, both base64 (standard encoding). It panics if
// sessionKey is not base64 of 16 bytes.
func encryptCBC(sessionKey string, plaintext []byte) (encryptedData, iv string) {
	key, err := base64.StdEncoding.DecodeString(sessionKey)
	if err != nil || len(key) != 16 {
		panic(fmt.Sprintf("mpauthxtest: session key %q is not base64 of 16 bytes", sessionKey))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	ivBytes := randomBytes(aes.BlockSize)
	padded := pkcs7Pad(plaintext, aes.BlockSize)
	out := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, ivBytes).CryptBlocks(out, padded)
	return base64.StdEncoding.EncodeToString(out), base64.StdEncoding.EncodeToString(ivBytes)
}
