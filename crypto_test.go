package mpauthx

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// The sample of WeChat's documentation ("开放数据校验与解密").
const (
	sampleAppID         = "wx4f4bc4dec97d474b"
	sampleSessionKey    = "tiihtNczf5v6AKRyjwEUhQ=="
	sampleIV            = "r7BXXKkLb8qrSNn05n0qiA=="
	sampleEncryptedData = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)

// Test key and iv for the vectors the tests make themselves.
var (
	testKey = []byte("0123456789abcdef")
	testIV  = []byte("fedcba9876543210")
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// pkcs7 pads plain to whole AES blocks, PKCS#7 style.
func pkcs7(plain []byte) []byte {
	n := aes.BlockSize - len(plain)%aes.BlockSize
	return append(bytes.Clone(plain), bytes.Repeat([]byte{byte(n)}, n)...)
}

// encryptRaw encrypts whole blocks (already padded, or deliberately not)
// with AES-128-CBC and returns them base64-encoded.
func encryptRaw(t testing.TB, key, iv, blocks []byte) string {
	t.Helper()
	if len(blocks)%aes.BlockSize != 0 {
		t.Fatalf("encryptRaw: %d bytes is not whole blocks", len(blocks))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(blocks))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, blocks)
	return b64(out)
}

// encrypt pads and encrypts plain with the test key and iv.
func encrypt(t testing.TB, plain string) string {
	t.Helper()
	return encryptRaw(t, testKey, testIV, pkcs7([]byte(plain)))
}

const testProfile = `{"openId":"oTEST","nickName":"Tester","gender":2,"city":"Shenzhen","province":"Guangdong","country":"CN","language":"en","watermark":{"appid":"wxtest","timestamp":1700000000}}`

func TestDecryptOfficialSample(t *testing.T) {
	u, err := DecryptUserInfo(sampleAppID, sampleSessionKey, sampleEncryptedData, sampleIV)
	if err != nil {
		t.Fatalf("DecryptUserInfo: %v", err)
	}
	want := UserInfo{
		OpenID:   "oGZUI0egBJY1zhBYw2KhdUfwVJJE",
		UnionID:  "ocMvos6NjeKLIBqg5Mr9QjxrP1FA",
		NickName: "Band",
		Gender:   1,
		Language: "zh_CN",
		City:     "Guangzhou",
		Province: "Guangdong",
		Country:  "CN",
		Watermark: Watermark{
			AppID:     sampleAppID,
			Timestamp: 1477314187,
		},
	}
	got := *u
	got.AvatarURL = "" // the sample's avatar URL is long and not checked here
	if got != want {
		t.Errorf("DecryptUserInfo =\n %+v\nwant\n %+v", got, want)
	}
	if !strings.HasPrefix(u.AvatarURL, "http://wx.qlogo.cn/") {
		t.Errorf("AvatarURL = %q, want a wx.qlogo.cn URL", u.AvatarURL)
	}
}

func TestDecryptOfficialSampleOtherApp(t *testing.T) {
	u, err := DecryptUserInfo("wx0000000000000000", sampleSessionKey, sampleEncryptedData, sampleIV)
	if u != nil {
		t.Errorf("DecryptUserInfo returned %+v for another app", u)
	}
	if Code(err) != StatusDecryptError {
		t.Fatalf("Code(err) = %d, want %d (err %v)", Code(err), StatusDecryptError, err)
	}
	if !errors.Is(err, errWatermark) {
		t.Errorf("err = %v, want errWatermark", err)
	}
}

func TestDecryptMadeVector(t *testing.T) {
	u, err := DecryptUserInfo("wxtest", b64(testKey), encrypt(t, testProfile), b64(testIV))
	if err != nil {
		t.Fatalf("DecryptUserInfo: %v", err)
	}
	if u.OpenID != "oTEST" || u.NickName != "Tester" || u.Gender != 2 || u.Watermark.AppID != "wxtest" || u.Watermark.Timestamp != 1700000000 {
		t.Errorf("DecryptUserInfo = %+v", u)
	}
}

// TestDecryptFullPaddingBlock checks a plaintext of whole blocks, whose
// padding is a full block of 16 bytes of 16.
func TestDecryptFullPaddingBlock(t *testing.T) {
	plain := `{"openId":"o1","watermark":{"appid":"wxtest"}}`
	plain += strings.Repeat(" ", (aes.BlockSize-len(plain)%aes.BlockSize)%aes.BlockSize)
	if len(plain)%aes.BlockSize != 0 {
		t.Fatalf("plaintext is %d bytes", len(plain))
	}
	padded := pkcs7([]byte(plain))
	if len(padded) != len(plain)+aes.BlockSize || padded[len(padded)-1] != aes.BlockSize {
		t.Fatalf("pkcs7 did not add a full block")
	}
	u, err := DecryptUserInfo("wxtest", b64(testKey), encryptRaw(t, testKey, testIV, padded), b64(testIV))
	if err != nil {
		t.Fatalf("DecryptUserInfo: %v", err)
	}
	if u.OpenID != "o1" {
		t.Errorf("OpenID = %q, want o1", u.OpenID)
	}

	got, err := decryptCBC(b64(testKey), encryptRaw(t, testKey, testIV, padded), b64(testIV))
	if err != nil {
		t.Fatalf("decryptCBC: %v", err)
	}
	if string(got) != plain {
		t.Errorf("decryptCBC = %q, want %q", got, plain)
	}
}

// TestDecryptPlaintextLengths round-trips plaintexts of every length around
// block boundaries, so that every pad value 1..16 is accepted.
func TestDecryptPlaintextLengths(t *testing.T) {
	for n := 0; n <= 3*aes.BlockSize; n++ {
		plain := bytes.Repeat([]byte{'x'}, n)
		got, err := decryptCBC(b64(testKey), encryptRaw(t, testKey, testIV, pkcs7(plain)), b64(testIV))
		if err != nil {
			t.Errorf("len %d: decryptCBC: %v", n, err)
			continue
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("len %d: decryptCBC = %q, want %q", n, got, plain)
		}
	}
}

// withPad returns one block "AAAA…" whose last bytes are tail.
func withPad(tail ...byte) []byte {
	b := bytes.Repeat([]byte{'A'}, aes.BlockSize)
	copy(b[aes.BlockSize-len(tail):], tail)
	return b
}

func TestDecryptRejections(t *testing.T) {
	key, iv := b64(testKey), b64(testIV)
	good := encrypt(t, testProfile)
	tests := []struct {
		name          string
		appID         string
		key, data, iv string
		want          error
	}{
		{"bad base64 key", "wxtest", "not*base64", good, iv, errBadBase64},
		{"bad base64 data", "wxtest", key, good[:len(good)-1] + "*", iv, errBadBase64},
		{"bad base64 iv", "wxtest", key, good, "%%%%", errBadBase64},
		{"unpadded base64 key", "wxtest", strings.TrimRight(key, "="), good, iv, errBadBase64},
		{"url base64 data", "wxtest", key, strings.NewReplacer("+", "-", "/", "_").Replace(sampleEncryptedData), iv, errBadBase64},
		{"key 15 bytes", "wxtest", b64(testKey[:15]), good, iv, errKeySize},
		{"key 17 bytes", "wxtest", b64(append(bytes.Clone(testKey), 'x')), good, iv, errKeySize},
		{"key 32 bytes", "wxtest", b64(bytes.Repeat(testKey, 2)), good, iv, errKeySize},
		{"key empty", "wxtest", "", good, iv, errKeySize},
		{"iv 15 bytes", "wxtest", key, good, b64(testIV[:15]), errIVSize},
		{"iv 17 bytes", "wxtest", key, good, b64(append(bytes.Clone(testIV), 'x')), errIVSize},
		{"iv empty", "wxtest", key, good, "", errIVSize},
		{"ciphertext empty", "wxtest", key, "", iv, errCipherLength},
		{"ciphertext 15 bytes", "wxtest", key, b64(make([]byte, 15)), iv, errCipherLength},
		{"ciphertext 17 bytes", "wxtest", key, b64(make([]byte, 17)), iv, errCipherLength},
		{"ciphertext 31 bytes", "wxtest", key, b64(make([]byte, 31)), iv, errCipherLength},
		{"pad byte 0", "wxtest", key, encryptRaw(t, testKey, testIV, withPad(0)), iv, errPadding},
		{"pad byte 17", "wxtest", key, encryptRaw(t, testKey, testIV, withPad(17)), iv, errPadding},
		{"pad byte 0xff", "wxtest", key, encryptRaw(t, testKey, testIV, withPad(0xff)), iv, errPadding},
		{"pad bytes unequal", "wxtest", key, encryptRaw(t, testKey, testIV, withPad(3, 2, 3)), iv, errPadding},
		{"pad 16 unequal", "wxtest", key, encryptRaw(t, testKey, testIV, append(pkcs7([]byte("x")), withPad(15, 16)...)), iv, errPadding},
		{"wrong key", "wxtest", b64([]byte("ffffffffffffffff")), good, iv, errPadding},
		{"plaintext not JSON", "wxtest", key, encrypt(t, "hello, world"), iv, errNotJSON},
		{"plaintext JSON array", "wxtest", key, encrypt(t, `[{"watermark":{"appid":"wxtest"}}]`), iv, errNotJSON},
		{"plaintext JSON string", "wxtest", key, encrypt(t, `"wxtest"`), iv, errNotJSON},
		{"plaintext truncated JSON", "wxtest", key, encrypt(t, testProfile[:len(testProfile)-1]), iv, errNotJSON},
		{"plaintext empty", "wxtest", key, encrypt(t, ""), iv, errNotJSON},
		{"watermark wrong type", "wxtest", key, encrypt(t, `{"openId":"o","watermark":"wxtest"}`), iv, errNotJSON},
		{"watermark missing", "wxtest", key, encrypt(t, `{"openId":"o","nickName":"n"}`), iv, errWatermark},
		{"watermark appid missing", "wxtest", key, encrypt(t, `{"openId":"o","watermark":{"timestamp":1}}`), iv, errWatermark},
		{"watermark of another app", "wxother", key, good, iv, errWatermark},
		{"watermark appid prefix", "wxtes", key, good, iv, errWatermark},
		{"watermark appid case", "WXTEST", key, good, iv, errWatermark},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := DecryptUserInfo(tt.appID, tt.key, tt.data, tt.iv)
			if err == nil {
				t.Fatalf("DecryptUserInfo = %+v, nil; want an error", u)
			}
			if u != nil {
				t.Errorf("DecryptUserInfo returned a UserInfo %+v with its error", u)
			}
			if c := Code(err); c != StatusDecryptError {
				t.Errorf("Code(err) = %d, want %d", c, StatusDecryptError)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if e.Code != StatusDecryptError {
				t.Errorf("e.Code = %d, want %d", e.Code, StatusDecryptError)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.want)
			}
			msg := err.Error()
			for _, secret := range []string{tt.key, tt.data, tt.iv} {
				if len(secret) >= 4 && strings.Contains(msg, secret) {
					t.Errorf("error text %q contains an input %q", msg, secret)
				}
			}
		})
	}
}

// TestDecryptErrorHidesInputs checks that no error text echoes the session
// key, the ciphertext or the plaintext.
func TestDecryptErrorHidesInputs(t *testing.T) {
	for _, appID := range []string{"wx0000000000000000", ""} {
		_, err := DecryptUserInfo(appID, sampleSessionKey, sampleEncryptedData, sampleIV)
		if err == nil {
			t.Fatalf("appID %q: no error", appID)
		}
		msg := err.Error()
		for _, s := range []string{sampleSessionKey, sampleEncryptedData[:24], "oGZUI0egBJY1zhBYw2KhdUfwVJJE", "Band", sampleAppID} {
			if strings.Contains(msg, s) {
				t.Errorf("error text %q contains %q", msg, s)
			}
		}
	}
	// Bad base64: the decoder's error names the offending byte; it must
	// not be passed on.
	_, err := DecryptUserInfo("wxtest", "c2VjcmV0*c2VjcmV0", sampleEncryptedData, sampleIV)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "illegal") {
		t.Errorf("bad base64 error = %v", err)
	}
}

// TestDecryptRepeatable checks that a decryption can be repeated: decryptCBC
// must not mutate anything shared between calls.
func TestDecryptRepeatable(t *testing.T) {
	for i := 0; i < 3; i++ {
		if _, err := DecryptUserInfo(sampleAppID, sampleSessionKey, sampleEncryptedData, sampleIV); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
}

func TestDecryptUnpad(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []byte // nil: errPadding
	}{
		{"pad 1", withPad(1), bytes.Repeat([]byte{'A'}, 15)},
		{"pad 2", withPad(2, 2), bytes.Repeat([]byte{'A'}, 14)},
		{"pad 15", withPad(bytes.Repeat([]byte{15}, 15)...), []byte{'A'}},
		{"pad 16", bytes.Repeat([]byte{16}, 16), []byte{}},
		{"pad 16 after a block", append(bytes.Repeat([]byte{'B'}, 16), bytes.Repeat([]byte{16}, 16)...), bytes.Repeat([]byte{'B'}, 16)},
		{"pad 0", withPad(0), nil},
		{"pad 17", withPad(17), nil},
		{"pad 17 over two blocks", bytes.Repeat([]byte{17}, 32), nil},
		{"pad 32 over two blocks", bytes.Repeat([]byte{32}, 32), nil},
		{"pad 0xff", withPad(0xff), nil},
		{"pad unequal 3 2 3", withPad(3, 2, 3), nil},
		{"pad 2 after a 1", withPad(1, 2, 2), append(bytes.Repeat([]byte{'A'}, 13), 1)},
		{"pad 16 with one byte off", append([]byte{15}, bytes.Repeat([]byte{16}, 15)...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			got, err := unpad(in)
			if tt.want == nil {
				if !errors.Is(err, errPadding) {
					t.Errorf("unpad(%x) = %x, %v; want errPadding", tt.in, got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("unpad(%x) = %x, %v; want %x", tt.in, got, err, tt.want)
			}
		})
	}
}
