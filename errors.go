package mpauthx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrClosed is wrapped by the *Error every method returns once Close has
// been called.
var ErrClosed = errors.New("mpauthx: client is closed")

// Error is the error returned by the Client's methods: every failure is, or
// wraps, an *Error. Code is the status code to report to the mini program,
// Message a short description that is safe to show to it, and Err the cause,
// if any (errors.Unwrap returns it). Neither Message nor Err ever contains the
// app secret, a session_key or a token.
type Error struct {
	Code    StatusCode // the status code to send to the mini program
	Message string     // a short description, safe to send
	Err     error      // the cause, or nil
}

// Error returns "mpauthx: <message> (<code>)" followed by the cause, if
// any. A cause that only repeats the message is not repeated: a wrapped
// *Error whose message ends the outer one adds its code instead
// ("... HTTP 500 (6008, 6002)"), and a sentinel reading "mpauthx: <message>"
// is left out.
func (e *Error) Error() string {
	msg := e.message()
	codes := strconv.Itoa(int(e.Code))
	cause := e.Err
	for {
		inner, ok := cause.(*Error)
		if !ok || !strings.HasSuffix(msg, inner.message()) {
			break
		}
		codes += ", " + strconv.Itoa(int(inner.Code))
		cause = inner.Err
	}
	s := "mpauthx: " + msg + " (" + codes + ")"
	if cause != nil {
		if t := cause.Error(); t != "mpauthx: "+msg {
			s += ": " + t
		}
	}
	return s
}

// message returns e's Message, or its code's when there is none.
func (e *Error) message() string {
	if e.Message == "" {
		return e.Code.Message()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// newError returns an *Error with code, message and cause.
func newError(code StatusCode, msg string, cause error) *Error {
	return &Error{Code: code, Message: msg, Err: cause}
}

// Code returns the status code of err: StatusSuccess for nil, the code of the
// outermost *Error in err's chain, else StatusUnknownError.
func Code(err error) StatusCode {
	if err == nil {
		return StatusSuccess
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return StatusUnknownError
}

// ErrorResult returns the Result to send as a JSON error reply for err:
// its code, its *Error's message (never the cause, which may describe the
// server's internals) and an empty token. For nil it returns a success
// Result with no token.
func ErrorResult(err error) Result {
	code := Code(err)
	msg := code.Message()
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		msg = e.Message
	}
	return Result{StatusCode: code, StatusMessage: msg}
}

// WeChatError is an errcode returned by WeChat's API, inside an HTTP 200.
// The Client returns it wrapped in the *Error of the call that failed:
// StatusSessionKeyRequestError (6008) for code2session and checksession,
// StatusAccessTokenError (6012) for stable_token, StatusPhoneNumberError
// (6013) for getuserphonenumber. The other platforms' login and phone
// APIs report their own error codes inside the same status codes (6008
// for a login, 6013 for a phone number). Find it with errors.As, whatever
// the outer code; Code gives the outer one.
type WeChatError struct {
	ErrCode int    // WeChat's errcode, such as ErrCodeCodeUsed
	ErrMsg  string // WeChat's errmsg, with the app secret removed
}

// Error returns "wechat: errcode N: errmsg".
func (e *WeChatError) Error() string {
	return fmt.Sprintf("wechat: errcode %d: %s", e.ErrCode, e.ErrMsg)
}

// WeChat errcodes of code2session.
const (
	ErrCodeBusy          = -1    // system busy; mpauthx retries it
	ErrCodeInvalidCode   = 40029 // the code is invalid
	ErrCodeCodeUsed      = 40163 // the code has been used already
	ErrCodeRateLimited   = 45011 // too many calls
	ErrCodeHighRiskUser  = 40226 // the user is blocked as high-risk
	ErrCodeInvalidAppID  = 40013 // AppID is wrong
	ErrCodeInvalidSecret = 40125 // AppSecret is wrong
)

// WeChat errcodes of the server APIs that take the app's access token
// (stable_token, getuserphonenumber, checksession).
const (
	ErrCodeInvalidAccessToken   = 40001 // the access token is invalid or was replaced; mpauthx refreshes it
	ErrCodeInvalidOpenID        = 40003 // the openid is unknown, or (getuserphonenumber) not the phone code's user
	ErrCodeMalformedAccessToken = 40014 // the access token is not one; mpauthx refreshes it
	ErrCodeAccessTokenExpired   = 42001 // the access token has expired; mpauthx refreshes it
	ErrCodeDailyQuota           = 45009 // the API's daily quota is used up (such as 20 forced refreshes)
	ErrCodeSessionKeyInvalid    = 87009 // checksession: the session key is not the user's current one
)

// weChatErrText describes the known errcodes for Error.Message.
func weChatErrText(code int) string {
	switch code {
	case ErrCodeBusy:
		return "WeChat is busy"
	case ErrCodeInvalidCode:
		return "invalid code"
	case ErrCodeCodeUsed:
		return "code already used"
	case ErrCodeRateLimited:
		return "rate limited by WeChat"
	case ErrCodeHighRiskUser:
		return "user blocked as high-risk"
	case ErrCodeInvalidAppID:
		return "invalid appid"
	case ErrCodeInvalidSecret:
		return "invalid app secret"
	case ErrCodeInvalidAccessToken, ErrCodeMalformedAccessToken:
		return "invalid access token"
	case ErrCodeAccessTokenExpired:
		return "access token expired"
	case ErrCodeInvalidOpenID:
		return "invalid openid"
	case ErrCodeDailyQuota:
		return "daily quota used up"
	case ErrCodeSessionKeyInvalid:
		return "session key no longer valid"
	default:
		return "WeChat error"
	}
}
