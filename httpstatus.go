package mpauthx

import (
	"errors"
	"net/http"
)

// HTTPStatus returns the HTTP status to answer a request with after a
// Client call returned err, so that the Middleware, your handlers and
// the demo answer alike. Mini programs read the Result's status_code; the
// HTTP status is for proxies, logs, alerts and curl:
//
//	nil                                          200 OK
//	6001, 6009, 6011 (the request's data)        400 Bad Request
//	6007, 6014 (log in again)                    401 Unauthorized
//	6008 or 6013 around errcode 40029 or 40163   401 (an invalid or used code;
//	  on Douyin err_no 40018, on Alipay isv.code-invalid)
//	6013 around errcode 40003                    401 (the phone code is another user's)
//	6008 around errcode 40226                    403 Forbidden (WeChat blocks the user as high-risk)
//	6010                                         404 Not Found
//	6015                                         409 Conflict
//	6016                                         501 Not Implemented
//	6000, or a call after Close                  503 Service Unavailable
//	the other failures of the platform           502 Bad Gateway
//	  (6002–6006, 6008, 6012, 6013)
//	9999 and errors that are not an *Error       500 Internal Server Error
//
// A login code that the platform refuses is the caller's to renew
// (wx.login again), hence 401; WeChat failing, or refusing the app's credentials,
// is a bad gateway. StatusUnsupported is 501: the call does not exist on
// this Client's platform, which is the server's set-up and not the
// request's fault, and no retry will change it. A call after Close is
// 503, like a database that is down: the instance is shutting down.
func HTTPStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	if errors.Is(err, ErrClosed) {
		return http.StatusServiceUnavailable
	}
	switch code := Code(err); code {
	case StatusSuccess:
		return http.StatusOK
	case StatusRequiredParamsMissing, StatusOpenIDMismatch, StatusDecryptError:
		return http.StatusBadRequest
	case StatusInvalidAccessToken, StatusSessionKeyMissing:
		return http.StatusUnauthorized
	case StatusUserNotExist:
		return http.StatusNotFound
	case StatusAccountConflict:
		return http.StatusConflict
	case StatusUnsupported:
		return http.StatusNotImplemented
	case StatusDatabaseError:
		return http.StatusServiceUnavailable
	case StatusSessionKeyRequestError, StatusPhoneNumberError:
		if codeRejected(err) { // WeChat's 40029 and 40163, Douyin's 40018, Alipay's isv.code-invalid
			return http.StatusUnauthorized
		}
		var we *WeChatError
		if errors.As(err, &we) {
			switch {
			case we.ErrCode == errCodeInvalidOpenID && code == StatusPhoneNumberError:
				return http.StatusUnauthorized
			case we.ErrCode == ErrCodeHighRiskUser && code == StatusSessionKeyRequestError:
				return http.StatusForbidden
			}
		}
		return http.StatusBadGateway
	case StatusHTTPError, StatusResponseIsNull, StatusJSONParseError, StatusHTTPResponseError,
		StatusHTTPRequestError, StatusAccessTokenError:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// errCodeInvalidOpenID is getuserphonenumber's errcode for a phone code
// that is not the openid's.
const errCodeInvalidOpenID = 40003
