package mpauthx_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
)

// cbcRaw encrypts plain, already padded to whole blocks, with AES-128-CBC
// under the base64 key b64Key and a zero iv, as standard base64.
func cbcRaw(t *testing.T, b64Key string, plain []byte) (data, iv string) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(b64Key)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	zero := make([]byte, aes.BlockSize)
	cipher.NewCBCEncrypter(block, zero).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out), base64.StdEncoding.EncodeToString(zero)
}

// failureText is everything a caller can show of a failure: the error in
// every format and its Result as JSON.
func failureText(err error) string {
	j, _ := json.Marshal(mpauthx.ErrorResult(err))
	return fmt.Sprintf("%v|%+v|%s", err, err, j)
}

// TestNoPaddingOracle: a payload whose PKCS#7 padding is bad and one that
// decrypts, with good padding, to something that is not JSON fail with
// the same text, in every form a handler might send back. Otherwise
// Decrypt (called with a payload of the user's choosing, under their
// stored session key, as often as they like) and Authorize would be a
// padding oracle: with it, a user could forge a payload that decrypts to
// plaintext of their choosing (CBC-R) under a session key they never
// see, such as a phone number or, for Authorize, another user's unionId.
func TestNoPaddingOracle(t *testing.T) {
	forEachRedis(t, nil, func(t *testing.T, e *env) {
		u := e.phoneUser("13800138000", "")
		if _, err := e.c.AuthorizeCode(bg, e.wx.Code(u.OpenID)); err != nil {
			t.Fatal(err)
		}
		block := bytes.Repeat([]byte("x"), aes.BlockSize)
		payloads := map[string][]byte{
			"bad padding":           append(bytes.Clone(block), bytes.Repeat([]byte{0}, aes.BlockSize)...),
			"unequal padding":       append(bytes.Clone(block), append(bytes.Repeat([]byte("y"), 13), 3, 2, 3)...),
			"good padding, no JSON": append(bytes.Clone(block), bytes.Repeat([]byte{aes.BlockSize}, aes.BlockSize)...),
			"one pad byte, no JSON": append(bytes.Clone(block), append(bytes.Repeat([]byte("y"), 15), 1)...),
		}
		texts := map[string]map[string]string{"Decrypt": {}, "Authorize": {}}
		for name, plain := range payloads {
			data, iv := cbcRaw(t, u.SessionKey, plain)
			_, err := e.c.Decrypt(bg, u.OpenID, data, iv)
			if mpauthx.Code(err) != mpauthx.StatusDecryptError {
				t.Fatalf("Decrypt of %s = %v, want 6011", name, err)
			}
			texts["Decrypt"][name] = failureText(err)
			_, err = e.c.Authorize(bg, e.wx.Code(u.OpenID), data, iv)
			if mpauthx.Code(err) != mpauthx.StatusDecryptError {
				t.Fatalf("Authorize with %s = %v, want 6011", name, err)
			}
			texts["Authorize"][name] = failureText(err)
		}
		for call, byName := range texts {
			want := byName["bad padding"]
			for name, got := range byName {
				if got != want {
					t.Errorf("%s: %s fails with\n\t%s\nbad padding with\n\t%s", call, name, got, want)
				}
			}
		}
	})
}
