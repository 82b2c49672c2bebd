package mpauthx

import (
	"errors"
	"strings"
	"testing"
)

// The reply parsers of the other platforms' logins, fuzzed like
// FuzzParseSessionReply: no panic, a success is usable, a failure is an
// *Error of the expected codes or the platform's error without secrets.

// checkPlatformErr fails t unless err is an *Error with one of codes, or
// a *WeChatError or *DouyinError with a non-zero code, a capped message
// and no fuzzSecret.
func checkPlatformErr(t *testing.T, err error, codes ...StatusCode) {
	t.Helper()
	var e *Error
	var we *WeChatError
	var de *DouyinError
	switch {
	case errors.As(err, &we):
		if we.ErrCode == 0 || len(we.ErrMsg) > maxErrMsgLen || strings.Contains(we.ErrMsg, fuzzSecret) {
			t.Fatalf("*WeChatError %v: errcode 0, too long or with the secret", we)
		}
	case errors.As(err, &de):
		if de.ErrNo == 0 || len(de.ErrMsg) > maxErrMsgLen || strings.Contains(de.ErrMsg, fuzzSecret) {
			t.Fatalf("*DouyinError %v: err_no 0, too long or with the secret", de)
		}
	case errors.As(err, &e):
		for _, c := range codes {
			if e.Code == c {
				return
			}
		}
		t.Fatalf("err = %v: code %d, want one of %v", err, e.Code, codes)
	default:
		t.Fatalf("err = %v (%T), want an *Error or a platform error", err, err)
	}
}

func FuzzParseOAuthReply(f *testing.F) {
	f.Add([]byte(`{"access_token":"ACCESS","expires_in":7200,"refresh_token":"R","openid":"oOA","scope":"snsapi_userinfo","unionid":"oU"}`))
	f.Add([]byte(`{"openid":"o","is_snapshotuser":1}`))
	f.Add([]byte(`{"openid":"o","is_snapshotuser":0}`))
	f.Add([]byte(`{"openid":"o","is_snapshotuser":"1"}`))
	f.Add([]byte(`{"openid":"o","is_snapshotuser":null}`))
	f.Add([]byte(`{"errcode":40163,"errmsg":"code been used, rid: 1` + fuzzSecret + `"}`))
	f.Add([]byte(`{"errcode":40029,"errmsg":"invalid code"}`))
	f.Add([]byte(`{"errcode":0,"unionid":"u"}`))
	f.Add([]byte(`{"openid":"o|x"}`))
	f.Add([]byte(`{"openid":"o","unionid":"u\u0000"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(strings.Repeat("[", 20000)))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseOAuthReply(body, fuzzSecret)
		if err != nil {
			if s != (session{}) {
				t.Errorf("parseOAuthReply returned %+v with error %v", s, err)
			}
			checkPlatformErr(t, err, StatusResponseIsNull, StatusJSONParseError, StatusSessionKeyRequestError)
			return
		}
		if !validUserID(s.openID) || (s.unionID != "" && !validUserID(s.unionID)) || s.sessionKey != "" {
			t.Fatalf("parseOAuthReply = %+v: unusable", s)
		}
	})
}

func FuzzParseDouyinSessionReply(f *testing.F) {
	f.Add([]byte(`{"err_no":0,"err_tips":"success","data":{"session_key":"tiihtNczf5v6AKRyjwEUhQ==","openid":"o","anonymous_openid":"","unionid":"u"}}`))
	f.Add([]byte(`{"err_no":40018,"err_tips":"bad code ` + fuzzSecret + `"}`))
	f.Add([]byte(`{"err_no":-1,"err_tips":"system error"}`))
	f.Add([]byte(`{"err_no":0,"data":null}`))
	f.Add([]byte(`{"err_no":0,"data":{"openid":"o"}}`))
	f.Add([]byte(`{"err_no":0,"data":{"openid":"o|x","session_key":"k"}}`))
	f.Add([]byte(`{"err_no":"40018"}`))
	f.Add([]byte(`{"err_no":9223372036854775807}`))
	f.Add([]byte(`{"errcode":40018,"errmsg":"bad code","error":3,"message":"bad code"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseDouyinSessionReply(body, fuzzSecret)
		if err != nil {
			if s != (session{}) {
				t.Errorf("parseDouyinSessionReply returned %+v with error %v", s, err)
			}
			checkPlatformErr(t, err, StatusResponseIsNull, StatusJSONParseError, StatusSessionKeyRequestError)
			return
		}
		if !validUserID(s.openID) || (s.unionID != "" && !validUserID(s.unionID)) || s.sessionKey == "" {
			t.Fatalf("parseDouyinSessionReply = %+v: unusable", s)
		}
	})
}

func FuzzParseDouyinPhoneReply(f *testing.F) {
	f.Add([]byte(`{"err_no":0,"err_msg":"","log_id":"2024","data":"bm90IGVuY3J5cHRlZA=="}`))
	f.Add([]byte(`{"err_no":28005187,"err_msg":"code expired ` + fuzzSecret + `"}`))
	f.Add([]byte(`{"err_no":0,"data":""}`))
	f.Add([]byte(`{"err_no":0,"data":"!!"}`))
	f.Add([]byte(`{"err_no":0,"data":12}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ct, err := parseDouyinPhoneReply(body, fuzzSecret)
		if err != nil {
			if ct != nil {
				t.Errorf("parseDouyinPhoneReply returned data with error %v", err)
			}
			checkPlatformErr(t, err, StatusResponseIsNull, StatusJSONParseError, StatusPhoneNumberError)
			return
		}
		if len(ct) == 0 {
			t.Fatal("parseDouyinPhoneReply = no data, nil")
		}
	})
}

// FuzzParseDouyinPhonePlain fuzzes what lies behind Douyin's RSA: the
// decrypted phone data.
func FuzzParseDouyinPhonePlain(f *testing.F) {
	f.Add([]byte(`{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"appid":"tt1","timestamp":1}}`))
	f.Add([]byte(`{"phoneNumber":"+12025550123","purePhoneNumber":"2025550123","countryCode":1,"watermark":{"appid":"tt1"}}`))
	f.Add([]byte(`{"purePhoneNumber":"13800138000"}`))
	f.Add([]byte(`{"purePhoneNumber":"1380013800x","countryCode":"86"}`))
	f.Add([]byte(`{"purePhoneNumber":"13800138000","countryCode":-1}`))
	f.Add([]byte(`{"purePhoneNumber":"13800138000","countryCode":1e3}`))
	f.Add([]byte(`{"purePhoneNumber":"13800138000","countryCode":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		p, _, err := parseDouyinPhonePlain(plain)
		if err != nil {
			if p != (Phone{}) {
				t.Errorf("parseDouyinPhonePlain returned %+v with error %v", p, err)
			}
			checkPlatformErr(t, err, StatusPhoneNumberError)
			return
		}
		if !validPhoneField(p.PurePhoneNumber, false) || !validPhoneField(p.PhoneNumber, true) || !validPhoneField(p.CountryCode, true) {
			t.Fatalf("parseDouyinPhonePlain = %+v: unusable", p)
		}
	})
}
