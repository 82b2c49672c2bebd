package mpauthx

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The seed corpora of these targets also live in testdata/fuzz/<target>/,
// with any input that once found a bug; plain `go test` replays them all.

func FuzzDecryptUserInfo(f *testing.F) {
	f.Add(sampleSessionKey, sampleEncryptedData, sampleIV)
	f.Add(b64(testKey), encrypt(f, testProfile), b64(testIV))
	f.Add(b64(testKey), encrypt(f, `{"watermark":{"appid":"`+sampleAppID+`"}}`), b64(testIV))
	f.Add(b64(testKey), encryptRaw(f, testKey, testIV, withPad(0)), b64(testIV))
	f.Add(b64(testKey), encryptRaw(f, testKey, testIV, withPad(3, 2, 3)), b64(testIV))
	f.Add(b64(testKey), encrypt(f, "[]"), b64(testIV))
	f.Add("", "", "")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("not base64!", sampleEncryptedData, sampleIV)
	f.Fuzz(func(t *testing.T, sessionKey, encryptedData, iv string) {
		u, err := DecryptUserInfo(sampleAppID, sessionKey, encryptedData, iv)
		if err != nil {
			if u != nil {
				t.Errorf("DecryptUserInfo returned %+v with error %v", u, err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != StatusDecryptError || Code(err) != StatusDecryptError {
				t.Fatalf("err = %v (%T), want an *Error with code 6011", err, err)
			}
			// A well-formed session key never shows in the error text.
			if len(sessionKey) == 24 && strings.HasSuffix(sessionKey, "==") && strings.Contains(err.Error(), sessionKey) {
				t.Errorf("error text %q holds the session key", err)
			}
			return
		}
		if u == nil {
			t.Fatal("DecryptUserInfo = nil, nil")
		}
		if u.Watermark.AppID != sampleAppID {
			t.Errorf("watermark appid = %q, want %q", u.Watermark.AppID, sampleAppID)
		}
	})
}

// FuzzDecryptPlaintext fuzzes what lies behind the cipher: plaintexts
// encrypted with a known key, so that the JSON and watermark checks see
// arbitrary input (random ciphertexts almost never get past the padding).
func FuzzDecryptPlaintext(f *testing.F) {
	f.Add([]byte(testProfile))
	f.Add([]byte(`{"watermark":{"appid":"wxtest"}}`))
	f.Add([]byte(`{"watermark":{"appid":"wxother"}}`))
	f.Add([]byte(`{"watermark":null}`))
	f.Add([]byte(`{"errcode":40125,"errmsg":"` + strings.Repeat("x", maxErrMsgLen-8) + fuzzSecret + `"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Add([]byte(strings.Repeat("[", 20000)))
	f.Fuzz(func(t *testing.T, plain []byte) {
		data := encryptRaw(t, testKey, testIV, pkcs7(plain))
		u, err := DecryptUserInfo("wxtest", b64(testKey), data, b64(testIV))
		if err != nil {
			if Code(err) != StatusDecryptError || !(errors.Is(err, errNotJSON) || errors.Is(err, errWatermark)) {
				t.Fatalf("err = %v, want 6011 with errNotJSON or errWatermark", err)
			}
			return
		}
		if u == nil || u.Watermark.AppID != "wxtest" {
			t.Fatalf("DecryptUserInfo = %+v, want watermark appid wxtest", u)
		}
	})
}

// fuzzSecret is the AppSecret FuzzParseSessionReply gives the parser.
const fuzzSecret = "fuzz-app-secret"

func FuzzParseSessionReply(f *testing.F) {
	f.Add([]byte(`{"openid":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","session_key":"tiihtNczf5v6AKRyjwEUhQ==","unionid":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA"}`))
	f.Add([]byte(`{"openid":"o","session_key":"k"}`))
	f.Add([]byte(` {"errcode":0,"errmsg":"ok","openid":"o","session_key":"k"} `))
	f.Add([]byte(`{"errcode":-1,"errmsg":"system error"}`))
	f.Add([]byte(`{"errcode":40029,"errmsg":"invalid code"}`))
	f.Add([]byte(`{"errcode":40163,"errmsg":"` + strings.Repeat("中", 100) + `"}`))
	f.Add([]byte("{\"errcode\":45011,\"errmsg\":\"\xff\xfe\"}"))
	f.Add([]byte(`{"openid":"o|x","session_key":"k"}`))
	f.Add([]byte(`{"openid":"o","session_key":"k","unionid":"u|x"}`))
	f.Add([]byte(`{"openid":"o\u0000","session_key":"k"}`))
	f.Add([]byte(`{"errcode":"40029"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Add([]byte(`<html></html>`))
	f.Add([]byte(strings.Repeat("[", 20000)))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseSessionReply(body, fuzzSecret)
		if err != nil {
			if s != (session{}) {
				t.Errorf("parseSessionReply returned %+v with error %v", s, err)
			}
			var e *Error
			var we *WeChatError
			switch {
			case errors.As(err, &e):
				switch e.Code {
				case StatusResponseIsNull, StatusJSONParseError, StatusSessionKeyRequestError:
				default:
					t.Fatalf("err = %v: code %d, want 6003, 6004 or 6008", err, e.Code)
				}
			case errors.As(err, &we):
				if we.ErrCode == 0 {
					t.Errorf("*WeChatError with errcode 0: %v", we)
				}
				if len(we.ErrMsg) > maxErrMsgLen {
					t.Errorf("ErrMsg is %d bytes, over %d", len(we.ErrMsg), maxErrMsgLen)
				}
				if !utf8.ValidString(we.ErrMsg) {
					t.Errorf("ErrMsg %q is not valid UTF-8", we.ErrMsg)
				}
				if strings.Contains(we.ErrMsg, fuzzSecret) {
					t.Errorf("ErrMsg %q holds the secret", we.ErrMsg)
				}
			default:
				t.Fatalf("err = %v (%T), want an *Error or a *WeChatError", err, err)
			}
			return
		}
		if s.openID == "" || s.sessionKey == "" {
			t.Fatalf("parseSessionReply = %+v, nil: openid or session_key empty", s)
		}
		if !validUserID(s.openID) {
			t.Errorf("openid %q is not a valid user ID", s.openID)
		}
		if s.unionID != "" && !validUserID(s.unionID) {
			t.Errorf("unionid %q is not a valid user ID", s.unionID)
		}
	})
}

func FuzzToken(f *testing.F) {
	f.Add("oGZUI0egBJY1zhBYw2KhdUfwVJJE|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	f.Add("a|b|c|d")
	f.Add("||")
	f.Add("|")
	f.Add("")
	f.Add("no pipe")
	f.Add("中文|sku|会话")
	f.Add("\xff|sku|\xfe")
	c := &Client{sku: "sku"}
	f.Fuzz(func(t *testing.T, token string) {
		userID, sku, session, ok := splitToken(token)
		openID := c.ExtractOpenID(token)
		gotSku := c.ExtractSku(token)
		if !strings.HasPrefix(token, openID) {
			t.Errorf("ExtractOpenID(%q) = %q, not a prefix", token, openID)
		}
		if strings.Contains(openID, "|") {
			t.Errorf("ExtractOpenID(%q) = %q holds a '|'", token, openID)
		}
		if openID == "" && strings.Contains(token, "|") && !strings.HasPrefix(token, "|") {
			t.Errorf("ExtractOpenID(%q) = \"\" for a token with a '|'", token)
		}
		if ok {
			if userID+"|"+sku+"|"+session != token {
				t.Errorf("splitToken(%q) = %q, %q, %q: does not rejoin", token, userID, sku, session)
			}
			if strings.Count(token, "|") != 2 {
				t.Errorf("splitToken(%q) ok with %d '|'", token, strings.Count(token, "|"))
			}
			if gotSku != sku {
				t.Errorf("ExtractSku(%q) = %q, want %q", token, gotSku, sku)
			}
			if openID != userID {
				t.Errorf("ExtractOpenID(%q) = %q, want %q", token, openID, userID)
			}
		} else {
			if userID != "" || sku != "" || session != "" {
				t.Errorf("splitToken(%q) = %q, %q, %q with ok false", token, userID, sku, session)
			}
			if gotSku != "" {
				t.Errorf("ExtractSku(%q) = %q for a token without three parts", token, gotSku)
			}
			if strings.Count(token, "|") == 2 {
				t.Errorf("splitToken(%q) not ok with exactly two '|'", token)
			}
		}
		if u, s, pok := c.parse(token); pok {
			if !ok || sku != "sku" || u != userID || s != session || !validUserID(u) || !validSession(s) {
				t.Errorf("parse(%q) = %q, %q, true; inconsistent with splitToken", token, u, s)
			}
		}
	})
}

// FuzzValidUserID checks validUserID's ASCII fast path against its
// definition: 1 to 256 bytes of printable UTF-8 (spaces allowed, but not
// at either end) without '|'.
func FuzzValidUserID(f *testing.F) {
	for _, s := range []string{"oGZUI0egBJY1zhBYw2KhdUfwVJJE", "a b", " a", "a ", "a|b", "中文", "a\u00a0", "a\x7fb", "\xff", "~", strings.Repeat("o", maxUserIDLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := id != "" && len(id) <= maxUserIDLen && utf8.ValidString(id) && strings.TrimSpace(id) == id &&
			!strings.ContainsFunc(id, func(r rune) bool { return r == '|' || !unicode.IsPrint(r) })
		if got := validUserID(id); got != want {
			t.Errorf("validUserID(%q) = %v, want %v", id, got, want)
		}
	})
}

func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer x")
	f.Add("bearer oABC|sku|ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	f.Add("BEARER  x ")
	f.Add("Bearer")
	f.Add("Bearer ")
	f.Add("Bearer\tx")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("")
	f.Add("Bearer \u00a0x\u3000")
	f.Add("Bearer \xff")
	f.Fuzz(func(t *testing.T, h string) {
		token, ok := bearerToken(h)
		if !ok {
			if token != "" {
				t.Errorf("bearerToken(%q) = %q, false", h, token)
			}
			return
		}
		if token == "" {
			t.Fatalf("bearerToken(%q) = \"\", true", h)
		}
		if strings.TrimSpace(token) != token {
			t.Errorf("bearerToken(%q) = %q: leading or trailing space", h, token)
		}
		if !strings.Contains(h, token) {
			t.Errorf("bearerToken(%q) = %q: not part of the header", h, token)
		}
		if trimmed := strings.TrimSpace(h); len(trimmed) < 7 || !strings.EqualFold(trimmed[:7], "Bearer ") {
			t.Errorf("bearerToken(%q) = %q, true without the Bearer scheme", h, token)
		}
		if again, ok := bearerToken("Bearer " + token); !ok || again != token {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, true", "Bearer "+token, again, ok, token)
		}
	})
}

// checkReplyError fails t unless err, from a parser of a server API's
// reply, is an *Error with code 6003, 6004 or the API's own code, or a
// *WeChatError with a non-zero errcode.
func checkReplyError(t *testing.T, err error, own StatusCode) {
	t.Helper()
	var e *Error
	var we *WeChatError
	switch {
	case errors.As(err, &e):
		if e.Code != StatusResponseIsNull && e.Code != StatusJSONParseError && e.Code != own {
			t.Fatalf("err = %v: code %d, want 6003, 6004 or %d", err, e.Code, own)
		}
	case errors.As(err, &we):
		if we.ErrCode == 0 {
			t.Errorf("*WeChatError with errcode 0: %v", we)
		}
	default:
		t.Fatalf("err = %v (%T), want an *Error or a *WeChatError", err, err)
	}
}

func FuzzParseStableTokenReply(f *testing.F) {
	f.Add([]byte(`{"access_token":"84_ABCdef-ghi_jkl","expires_in":7200}`))
	f.Add([]byte(` {"errcode":0,"access_token":"t","expires_in":1} `))
	f.Add([]byte(`{"errcode":40125,"errmsg":"invalid appsecret, rid: 1"}`))
	f.Add([]byte(`{"errcode":45009,"errmsg":"` + strings.Repeat("中", 100) + `"}`))
	f.Add([]byte(`{"access_token":"a b","expires_in":7200}`))
	f.Add([]byte(`{"access_token":"t","expires_in":-1}`))
	f.Add([]byte(`{"access_token":"t","expires_in":1e30}`))
	f.Add([]byte(`{"access_token":"t"}`))
	f.Add([]byte(`{"access_token":1,"expires_in":"7200"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`<html></html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		token, ttl, err := parseStableTokenReply(body)
		if err != nil {
			if token != "" || ttl != 0 {
				t.Errorf("parseStableTokenReply returned %q, %v with error %v", token, ttl, err)
			}
			checkReplyError(t, err, StatusAccessTokenError)
			return
		}
		if !validAccessToken(token) || ttl <= 0 || ttl > 24*time.Hour {
			t.Fatalf("parseStableTokenReply = %q, %v: not a usable token and lifetime", token, ttl)
		}
	})
}

func FuzzParsePhoneReply(f *testing.F) {
	f.Add([]byte(`{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"timestamp":1637744274,"appid":"wx-app"}}}`))
	f.Add([]byte(`{"phone_info":{"phoneNumber":"+12025550123","purePhoneNumber":"2025550123","countryCode":"1","watermark":{"appid":"x"}}}`))
	f.Add([]byte(`{"errcode":40029,"errmsg":"invalid code"}`))
	f.Add([]byte(`{"errcode":0}`))
	f.Add([]byte(`{"phone_info":null}`))
	f.Add([]byte(`{"phone_info":{"phoneNumber":"+","purePhoneNumber":"1","countryCode":"86"}}`))
	f.Add([]byte(`{"phone_info":{"phoneNumber":"1","purePhoneNumber":"1 OR 1=1","countryCode":"86"}}`))
	f.Add([]byte(`{"phone_info":{"phoneNumber":"1","purePhoneNumber":"` + strings.Repeat("1", 40) + `","countryCode":"86"}}`))
	f.Add([]byte(`{"phone_info":"x"}`))
	f.Add([]byte(``))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, appID, err := parsePhoneReply(body)
		if err != nil {
			if p != (Phone{}) || appID != "" {
				t.Errorf("parsePhoneReply returned %+v, %q with error %v", p, appID, err)
			}
			checkReplyError(t, err, StatusPhoneNumberError)
			return
		}
		for _, s := range []string{p.PhoneNumber, p.PurePhoneNumber, p.CountryCode} {
			if s == "" || len(s) > maxPhoneLen+1 || strings.Trim(s, "+0123456789") != "" {
				t.Errorf("parsePhoneReply = %+v: field %q is not a phone number", p, s)
			}
		}
	})
}

func FuzzSealOpen(f *testing.F) {
	s := newSealer("secret", "wx-app")
	f.Add([]byte("o-alice\x00tiihtNczf5v6AKRyjwEUhQ=="), "mpauthx:{o-alice|sku}:sk", []byte(nil))
	f.Add([]byte{}, "", []byte("garbage"))
	f.Fuzz(func(t *testing.T, plain []byte, ad string, junk []byte) {
		blob := s.seal(plain, ad)
		got, err := s.open(blob, ad)
		if err != nil || string(got) != string(plain) {
			t.Fatalf("open(seal(%q)) = %q, %v", plain, got, err)
		}
		if _, err := s.open(blob, ad+"x"); err == nil {
			t.Error("a sealed value opened under another key")
		}
		if _, err := s.open(string(junk), ad); err == nil && len(junk) > 0 {
			// Forging a GCM tag by chance is not going to happen.
			t.Errorf("junk %q opened", junk)
		}
	})
}
