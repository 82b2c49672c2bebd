package mpauthx

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// UserInfo is the user profile a mini program sends as encryptedData (from
// wx.getUserInfo or a button with open-type="getUserInfo").
type UserInfo struct {
	OpenID    string    `json:"openId"`            // the user's openid in this mini program
	UnionID   string    `json:"unionId,omitempty"` // the user's unionid, when the app is bound to an Open Platform account
	NickName  string    `json:"nickName"`          // the profile fields, as WeChat sends them
	Gender    int       `json:"gender"`            // 0 unknown, 1 male, 2 female
	Language  string    `json:"language"`
	City      string    `json:"city"`
	Province  string    `json:"province"`
	Country   string    `json:"country"`
	AvatarURL string    `json:"avatarUrl"` // not stored in the user table
	Watermark Watermark `json:"watermark"` // checked against the AppID
}

// Watermark identifies the app that encrypted the data and when.
type Watermark struct {
	AppID     string `json:"appid"`     // the mini program the data is for
	Timestamp int64  `json:"timestamp"` // when WeChat encrypted it, in Unix seconds
}

// Decryption failures, wrapped in an *Error with code StatusDecryptError.
// errPadding and errNotJSON read the same: a caller who sends err.Error()
// back to the mini program must not turn Decrypt or Authorize into a
// padding oracle, with which a user could forge a payload under a session
// key they never see.
var (
	errBadBase64    = errors.New("not valid base64")
	errKeySize      = errors.New("session key is not 16 bytes")
	errIVSize       = errors.New("iv is not 16 bytes")
	errCipherLength = errors.New("ciphertext is empty or not a multiple of 16 bytes")
	errPadding      = errors.New(undecryptable)
	errNotJSON      = errors.New(undecryptable)
	errWatermark    = errors.New("watermark appid is not this app's")
)

// undecryptable is the text of both errPadding and errNotJSON.
const undecryptable = "does not decrypt to a JSON object"

// DecryptUserInfo decrypts a mini program's encryptedData with the
// session_key of its code2session and checks that its watermark names appID.
// It is the low-level step of Authorize, exported for callers that decrypt
// profiles themselves; an empty appID matches no watermark. All three strings are standard
// base64, as WeChat sends them. Every failure is an *Error with code
// StatusDecryptError; it never panics and never echoes its inputs.
func DecryptUserInfo(appID, sessionKey, encryptedData, iv string) (*UserInfo, error) {
	plain, err := decryptCBC(sessionKey, encryptedData, iv)
	if err != nil {
		return nil, newError(StatusDecryptError, "cannot decrypt encryptedData", err)
	}
	var u UserInfo
	if err := json.Unmarshal(plain, &u); err != nil {
		return nil, newError(StatusDecryptError, "cannot decrypt encryptedData", errNotJSON)
	}
	if appID == "" || subtle.ConstantTimeCompare([]byte(u.Watermark.AppID), []byte(appID)) != 1 {
		return nil, newError(StatusDecryptError, "encryptedData is not for this app", errWatermark)
	}
	return &u, nil
}

// decryptCBC undoes AES-128-CBC with PKCS#7 padding, strictly: a 16-byte
// key and iv, whole blocks, padding 1..16 with equal bytes.
func decryptCBC(b64Key, b64Data, b64IV string) ([]byte, error) {
	key, err1 := base64.StdEncoding.DecodeString(b64Key)
	data, err2 := base64.StdEncoding.DecodeString(b64Data)
	iv, err3 := base64.StdEncoding.DecodeString(b64IV)
	switch {
	case err1 != nil || err2 != nil || err3 != nil:
		return nil, errBadBase64
	case len(key) != aes.BlockSize:
		return nil, errKeySize
	case len(iv) != aes.BlockSize:
		return nil, errIVSize
	case len(data) == 0 || len(data)%aes.BlockSize != 0:
		return nil, errCipherLength
	}
	block, err := aes.NewCipher(key)
	if err != nil { // unreachable with a 16-byte key
		return nil, errKeySize
	}
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(data, data)
	return unpad(data)
}

// unpad strips PKCS#7 padding of a whole number of AES blocks.
func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errPadding
	}
	n := int(b[len(b)-1])
	if n < 1 || n > aes.BlockSize || n > len(b) {
		return nil, errPadding
	}
	if !bytes.Equal(b[len(b)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errPadding
	}
	return b[:len(b)-n], nil
}
