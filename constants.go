package mpauthx

import "time"

// StatusCode is a status code of the Node.js original, kept so that mini
// programs written against it keep working. StatusSuccess is the only code
// that is not an error.
type StatusCode int

// The status codes. Their values are those of the Node.js original.
const (
	StatusSuccess                StatusCode = 1    // success, message "OK"
	StatusDatabaseError          StatusCode = 6000 // Redis or SQL failed
	StatusRequiredParamsMissing  StatusCode = 6001 // an empty or invalid required argument
	StatusHTTPError              StatusCode = 6002 // WeChat answered with a non-200 status
	StatusResponseIsNull         StatusCode = 6003 // WeChat answered with an empty body
	StatusJSONParseError         StatusCode = 6004 // WeChat's body is not JSON
	StatusHTTPResponseError      StatusCode = 6005 // reading WeChat's body failed (or it exceeded 1 MiB)
	StatusHTTPRequestError       StatusCode = 6006 // the request to WeChat could not be made
	StatusInvalidAccessToken     StatusCode = 6007 // the middleware's reply for a missing or invalid token
	StatusSessionKeyRequestError StatusCode = 6008 // code2session failed in any way
	StatusOpenIDMismatch         StatusCode = 6009 // the decrypted openId differs from code2session's
	StatusUserNotExist           StatusCode = 6010 // RefreshToken for a user that is not registered
	StatusDecryptError           StatusCode = 6011 // encryptedData could not be decrypted or is not ours
	StatusAccessTokenError       StatusCode = 6012 // the app's access token could not be had
	StatusPhoneNumberError       StatusCode = 6013 // getuserphonenumber failed in any way
	StatusSessionKeyMissing      StatusCode = 6014 // no stored session key for the user: they must log in again
	StatusAccountConflict        StatusCode = 6015 // the login's identifiers, or Link's, belong to another user: never merged
	StatusUnsupported            StatusCode = 6016 // the call does not exist on this Client's Platform
	StatusUnknownError           StatusCode = 9999 // anything else
)

// Message returns the code's default message, such as "OK" or
// "database error".
func (s StatusCode) Message() string {
	switch s {
	case StatusSuccess:
		return "OK"
	case StatusDatabaseError:
		return "database error"
	case StatusRequiredParamsMissing:
		return "required params missing"
	case StatusHTTPError:
		return "http error"
	case StatusResponseIsNull:
		return "response is null"
	case StatusJSONParseError:
		return "json parse error"
	case StatusHTTPResponseError:
		return "http response error"
	case StatusHTTPRequestError:
		return "http request error"
	case StatusInvalidAccessToken:
		return "invalid access token"
	case StatusSessionKeyRequestError:
		return "session key request error"
	case StatusOpenIDMismatch:
		return "openid mismatch"
	case StatusUserNotExist:
		return "user does not exist"
	case StatusDecryptError:
		return "decrypt error"
	case StatusAccessTokenError:
		return "access token error"
	case StatusPhoneNumberError:
		return "phone number error"
	case StatusSessionKeyMissing:
		return "session key missing"
	case StatusAccountConflict:
		return "account conflict"
	case StatusUnsupported:
		return "unsupported on this platform"
	default:
		return "unknown error"
	}
}

// Defaults used where a Config field is left at its zero value.
const (
	// DefaultTokenTTL is the lifetime of an access token: 72 hours.
	DefaultTokenTTL = 259200 * time.Second
	// DefaultAPIBase is WeChat's API server.
	DefaultAPIBase = "https://api.weixin.qq.com"
	// DefaultRedisAddr is the Redis server New dials when Config.Redis and
	// Config.RedisAddr are both empty.
	DefaultRedisAddr = "127.0.0.1:6379"
	// DefaultHTTPTimeout is the timeout of the HTTP client used when
	// Config.HTTPClient is nil.
	DefaultHTTPTimeout = 10 * time.Second
)

// Limits and internal tuning.
const (
	// keyPrefix starts every Redis key mpauthx writes.
	keyPrefix = "mpauthx:"
	// maxBodyBytes caps a code2session reply; a larger one is an error.
	maxBodyBytes = 1 << 20
	// maxUserIDLen caps the user ID part of a token. WeChat's openid and
	// unionid are 28 or 29 characters long.
	maxUserIDLen = 256
	// maxBusyRetries is how many times a code2session answered with
	// errcode -1 (system busy) is retried.
	maxBusyRetries = 3
	// busyBackoff is the wait before the first retry; it doubles.
	busyBackoff = 50 * time.Millisecond
	// sessionLen is the length of a token's session part: crypto/rand.Text,
	// 26 base32 characters carrying 130 random bits.
	sessionLen = 26
	// tableCheckTimeout bounds New's check of the user table.
	tableCheckTimeout = 10 * time.Second
)
