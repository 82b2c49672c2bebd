package mpauthx

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Every login keeps the user's latest session key of its app beside the
// token, in a hash with a field per AppID:
//
//	mpauthx:{<userID>|<sku>}:sks  ->  <AppID>: seal(openid NUL session_key); the hash has the token's expiry
//
// sealed with AES-256-GCM under a key derived from the AppSecret and the
// AppID, with the Redis key and the field as associated data: Redis never
// holds a session key in clear, and a sealed value moved to another
// user's key or another app's field does not open. Two apps of one user
// (two mini programs sharing a Redis and a Sku) keep a session key each;
// RefreshToken gives them all the token's new expiry, RevokeToken ends
// them all, with one key of the user's hash tag.

// sealLabel is the HKDF info label of the sealing key; the AppID follows
// it.
const sealLabel = "mpauthx seal v1\x00"

// sealer seals what mpauthx keeps at rest in Redis (session keys, the
// shared access token): AES-256-GCM with a random nonce, under a key
// derived from the AppSecret and the AppID with HKDF-SHA256.
type sealer struct {
	aead cipher.AEAD
}

// newSealer derives the sealing key of an app.
func newSealer(secret, appID string) *sealer {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, sealLabel+appID, 32)
	if err != nil { // unreachable: 32 bytes is far below HKDF-SHA256's limit
		panic("mpauthx: hkdf: " + err.Error())
	}
	block, err := aes.NewCipher(key)
	if err != nil { // unreachable with a 32-byte key
		panic("mpauthx: aes: " + err.Error())
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil { // unreachable with AES
		panic("mpauthx: gcm: " + err.Error())
	}
	return &sealer{aead: aead}
}

// seal returns plain sealed, bound to ad (the Redis key it is stored in).
func (s *sealer) seal(plain []byte, ad string) string {
	return string(s.aead.Seal(nil, nil, plain, []byte(ad)))
}

// open returns what seal sealed under ad, or an error when blob was sealed
// under another key or ad, or altered.
func (s *sealer) open(blob, ad string) ([]byte, error) {
	return s.aead.Open(nil, nil, []byte(blob), []byte(ad))
}

// skKey returns the Redis key of the hash holding userID's sealed session
// keys for c's Sku, a field per AppID (c's is c.appID); it shares the
// hash tag of the user's session.
func (c *Client) skKey(userID string) string {
	return keyPrefix + "{" + userID + "|" + c.sku + "}:sks"
}

// skSealAD is the associated data that seals userID's session key of c's
// app: the hash's key and c's field.
func (c *Client) skSealAD(userID string) string {
	return c.skKey(userID) + "\x00" + c.appID
}

// userKeys returns the Redis keys of userID's token and sealed session
// key, which share a hash slot, for one script. A user ID starting with
// '}' (never one of WeChat's) makes the hash tag empty, which Redis
// ignores: the two keys could then land on different Cluster nodes, so
// such a user has the token's key alone, and no session key.
func (c *Client) userKeys(userID string) []string {
	if strings.HasPrefix(userID, "}") {
		return []string{c.sessionKey(userID)}
	}
	return []string{c.sessionKey(userID), c.skKey(userID)}
}

// sealSessionKey seals the openid and session key of a login for userID.
func (c *Client) sealSessionKey(userID string, s session) string {
	plain := make([]byte, 0, len(s.openID)+1+len(s.sessionKey))
	plain = append(plain, s.openID...)
	plain = append(plain, 0)
	plain = append(plain, s.sessionKey...)
	return c.seal.seal(plain, c.skSealAD(userID))
}

// loadSessionKey returns userID's openid and latest session key in c's app:
// StatusSessionKeyMissing when there is none (or it cannot be opened),
// StatusDatabaseError when Redis fails.
func (c *Client) loadSessionKey(ctx context.Context, userID string) (openID, sessionKey string, err error) {
	if err := checkUserID(userID); err != nil {
		return "", "", err
	}
	if len(c.userKeys(userID)) < 2 {
		return "", "", newError(StatusSessionKeyMissing, "no session key for the user: they must log in again", nil)
	}
	var blob string
	err = await(ctx, func() (err error) {
		blob, err = c.rdb.HGet(ctx, c.skKey(userID), c.appID).Result()
		return err
	})
	// A key of another type was not written by mpauthx: no session key.
	if errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "WRONGTYPE") {
		return "", "", newError(StatusSessionKeyMissing, "no session key for the user: they must log in again", nil)
	}
	if err != nil {
		return "", "", c.storageError(ctx, "reading the session key failed", err)
	}
	plain, err := c.seal.open(blob, c.skSealAD(userID))
	if err != nil {
		// Sealed under another AppSecret (rotated) or altered.
		c.log.LogAttrs(ctx, slog.LevelWarn, "mpauthx: a stored session key does not open; the user must log in again")
		return "", "", newError(StatusSessionKeyMissing, "no usable session key for the user: they must log in again", nil)
	}
	openID, sessionKey, _ = strings.Cut(string(plain), "\x00")
	return openID, sessionKey, nil
}

// Decrypt decrypts a payload the mini program got from WeChat for this user
// (wx.getWeRunData, share info, ...) with the user's latest session key,
// checking the watermark like Authorize does.
//
// The session key is the one WeChat gave the user's latest login (Authorize,
// AuthorizeCode or AuthorizePhone) for this Sku, kept sealed beside the
// user's token for as long as the token lives: StatusSessionKeyMissing
// when there is none, as after the token expired or was revoked (the user
// must log in again, and the mini program must then fetch the payload
// again, since WeChat encrypts it with the session key of the moment). A
// payload that does not decrypt, is not a JSON object or whose
// watermark.appid is not this app's is StatusDecryptError. It returns the
// plaintext JSON.
func (c *Client) Decrypt(ctx context.Context, userID, encryptedData, iv string) ([]byte, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if err := c.supports(callDecrypt); err != nil {
		c.logFailure(ctx, err)
		return nil, err
	}
	plain, err := c.decrypt(ctx, userID, encryptedData, iv)
	if err != nil {
		c.logFailure(ctx, err)
		return nil, err
	}
	return plain, nil
}

// decrypt is Decrypt without its logging.
func (c *Client) decrypt(ctx context.Context, userID, encryptedData, iv string) ([]byte, error) {
	if err := required("userID", userID, "encryptedData", encryptedData, "iv", iv); err != nil {
		return nil, err
	}
	_, sk, err := c.loadSessionKey(ctx, userID)
	if err != nil {
		return nil, err
	}
	plain, err := decryptCBC(sk, encryptedData, iv)
	if err != nil {
		return nil, newError(StatusDecryptError, "cannot decrypt encryptedData", err)
	}
	var w struct {
		Watermark Watermark `json:"watermark"`
	}
	if err := json.Unmarshal(plain, &w); err != nil {
		return nil, newError(StatusDecryptError, "cannot decrypt encryptedData", errNotJSON)
	}
	if !hmac.Equal([]byte(w.Watermark.AppID), []byte(c.appID)) {
		return nil, newError(StatusDecryptError, "encryptedData is not for this app", errWatermark)
	}
	return plain, nil
}

// checkSessionReply is checksession's JSON reply. Its errcode is
// required: a reply that does not say 0 is no proof that the key is
// current.
type checkSessionReply struct {
	ErrCode *int   `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// CheckSessionKey asks WeChat whether the user's stored session key is
// still the current one (wxa/checksession).
//
// It reports false, with a nil error, when WeChat answers that the key is
// no longer valid (errcode 87009): the user logged in elsewhere or WeChat
// rotated the key, and the payloads the mini program fetches now do not
// decrypt with it. With no stored key it fails with
// StatusSessionKeyMissing. The call takes the app's access token (see
// AccessToken), renewed once if WeChat rejects it; other failures of
// WeChat are StatusSessionKeyRequestError wrapping the cause (a
// *WeChatError for another errcode). Only an explicit errcode 0 means
// true: a reply without an errcode is such a failure too.
func (c *Client) CheckSessionKey(ctx context.Context, userID string) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, err
	}
	if err := c.supports(callCheckSessionKey); err != nil {
		c.logFailure(ctx, err)
		return false, err
	}
	openID, sk, err := c.loadSessionKey(ctx, userID)
	if err != nil {
		c.logFailure(ctx, err)
		return false, err
	}
	mac := hmac.New(sha256.New, []byte(sk))
	sig := hex.EncodeToString(mac.Sum(nil))
	valid := false
	err = c.withAccessToken(ctx, StatusSessionKeyRequestError, "checksession", func(token string) error {
		q := url.Values{"access_token": {token}, "openid": {openID}, "signature": {sig}, "sig_method": {"hmac_sha256"}}
		body, err := c.callAPI(ctx, http.MethodGet, c.checkSessionURL+"?"+q.Encode(), nil, token, sig)
		if err != nil {
			return err
		}
		var r checkSessionReply
		if err := decodeReply(body, "checksession", &r); err != nil {
			return err
		}
		if r.ErrCode == nil {
			return newError(StatusSessionKeyRequestError, "checksession reply lacks errcode", nil)
		}
		switch *r.ErrCode {
		case 0:
			valid = true
		case ErrCodeSessionKeyInvalid:
			valid = false
		default:
			return c.cleanWeChatError(&WeChatError{ErrCode: *r.ErrCode, ErrMsg: r.ErrMsg}, token, sig)
		}
		return nil
	})
	if err != nil {
		c.logFailure(ctx, err)
		return false, err
	}
	return valid, nil
}
