package mpauthx

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The published vectors of Alipay's protocol (platform-protocols.md,
// section 5), with the public test keys of Alipay's Node.js SDK in
// testdata/alipay.
const (
	// A real reply signed by Alipay (alipay-sdk-nodejs, test/alipay.test.js,
	// checkResponseSign "normal"), verified by alipay-public-key.pem. The
	// `\/` are on the wire: the signature covers them.
	vecReplyRoot   = "alipay_offline_material_image_upload_response"
	vecReply       = `{"alipay_offline_material_image_upload_response":{"code":"10000","msg":"Success","image_id":"akGwYYaFTai3r1uB0ww-1QAAACMAAQQD","image_url":"https:\/\/oalipay-dl-django.alicdn.com\/rest\/1.0\/image?fileIds=akGwYYaFTai3r1uB0ww-1QAAACMAAQQD&zoom=original"},"sign":"PAb3IueJzGe/pU/fRAPjwIs543Kc/A6D0rz03AMejwr8h8rDc6FhDJDnz3fGLDdQP7ctjtQwwJW3pmdZZcGmp4lb/5YYgtoK6McjnRr4ER/raJLYn1IbpzkowhGow2esA/XeDblIAYUbZjU6ts0IqNncrZrCknDWHpaZXwGuaU7CUBk74xBeMeja7rEEkFlm9MRtiQNYnum/cGVtcDv/aQ8KkPyAD58oJiAzoXv0R6jFhlZtAWv+M0SaOlhTpZh1K6wlP+1Umiqdvqbc1oWdfpv75a+lGTkGHMy8K7/bnAGm20IRsisSv1B5rpJyeGfrVf6tb4MZ7vG4w0rS0c2hfA=="}`
	vecReplySigned = `{"code":"10000","msg":"Success","image_id":"akGwYYaFTai3r1uB0ww-1QAAACMAAQQD","image_url":"https:\/\/oalipay-dl-django.alicdn.com\/rest\/1.0\/image?fileIds=akGwYYaFTai3r1uB0ww-1QAAACMAAQQD&zoom=original"}`

	// A request's string to sign and its signature with app-private-key.pem.
	vecRequestContent = "app_id=2021000000000001&charset=utf-8&code=4b203fe6c11548bcabd8da5bb087a83b&format=JSON&grant_type=authorization_code&method=alipay.system.oauth.token&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"
	vecRequestSign    = "b/JqBeWok2tqskrqITOfx4GmbS193SFgoTLOaDonv8LxKb5QX8CJ93tonaIvvo8Tycic3a1u8et8MvQSZhWp/qR3CQXHovZX8KON30ZLe70eH0cOIBUKisr45+DJzOGj9hMn1TBvMgOpl57PlXlMv339pSMW6AjvAFmeKN5BlmfJB+jp8AU2rpXgKvR1/izzVuf5/GA51KSpTF+MrgXYAtbBxp7IfylmwizIubEKW7A1gSYFn/MoDm5CFLSPXSFfmYO6tijoVRgl+h+pZJVUSn2nTxQZ2MTaBKv9HFYKJ4cR9DjylyXBRmmHDXsVZH9XYeQdMIziv5iekP/mV8jigg=="

	// A phone response: AES key, plaintext, its ciphertext (zero IV) and
	// the signature of the ciphertext in quotes by app-private-key.pem
	// (playing Alipay).
	vecPhoneAESKey = "AAECAwQFBgcICQoLDA0ODw=="
	vecPhonePlain  = `{"code":"10000","msg":"Success","mobile":"13800000000"}`
	vecPhoneCipher = "igATcyTqqgv1AFpBiHJyVf94zn4d80DWhHrnUhty+8QLcUOlYjxvP9Xk+YXblbTSoe2bGplnUECoaQrDECEzOw=="
	vecPhoneSign   = "NkXw6DWaQD8paiRws2KGfkwZj5M6ObkDwbBNyULPKaUs6csId1Rn3TJCGsBuaibQT9z4a+AZNhAfpu3IJp8+YA4bT7bXPMnAc+bIRiwY4vAUdgsSpDu+IPk1NVFgp1at7oDMj787VfhjtkQRGRSznS6A4yDBXBo9p46cuayAmgr9eyyWMGIVG1bUSnCAoyOf7nqS7jUaoTR+i8/SOjYQafnK2C4Ds2j8A1TmWGkb5rbDn38Mfk5icPWR016Al/2vwK21EpM0sC4c672Zs/fJ9eVihdHi46AsWfbZDthooMAWaPmT4pCSlEj0dfRI5orCsGk7oT/lu7TPDmdBEoz4zg=="
)

// alipayFixture reads testdata/alipay/name.
func alipayFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "alipay", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// alipayKeys returns the fixtures' app key pair and Alipay's public key.
func alipayKeys(t testing.TB) (app *rsa.PrivateKey, appPub, alipayPub *rsa.PublicKey) {
	t.Helper()
	app, err := parseRSAPrivateKey(alipayFixture(t, "app-private-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	appPub, err = parseRSAPublicKey(alipayFixture(t, "app-public-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	alipayPub, err = parseRSAPublicKey(alipayFixture(t, "alipay-public-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return app, appPub, alipayPub
}

// signAlipay signs content with key, failing the test on error.
func signAlipay(t testing.TB, key *rsa.PrivateKey, content string) string {
	t.Helper()
	s, err := alipaySign(key, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// alipayJSON returns s as a JSON string literal.
func alipayJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestAlipayRequestSignatureVector(t *testing.T) {
	app, appPub, _ := alipayKeys(t)
	// 04:00 UTC is noon in Beijing: the timestamp is sent in UTC+8
	// whatever the server's zone.
	now := time.Date(2024, 1, 1, 4, 0, 0, 0, time.UTC)
	params := alipayTokenParams("2021000000000001", "4b203fe6c11548bcabd8da5bb087a83b", now)
	if got := alipaySignContent(params); got != vecRequestContent {
		t.Fatalf("string to sign:\n got %s\nwant %s", got, vecRequestContent)
	}
	sign := signAlipay(t, app, alipaySignContent(params))
	if sign != vecRequestSign {
		t.Fatalf("sign = %s, want the published %s", sign, vecRequestSign)
	}
	if !alipayVerify(appPub, []byte(vecRequestContent), sign) {
		t.Fatal("the app's public key does not verify the request's sign")
	}
	// sign is never signed, nor is an empty value; the order is by key.
	params["sign"] = sign
	params["app_auth_token"] = ""
	params["biz_content"] = ""
	if got := alipaySignContent(params); got != vecRequestContent {
		t.Fatalf("with sign and empty values, string to sign = %s", got)
	}
	if got := alipaySignContent(map[string]string{"b": "2", "a_b": "1", "a": "x=y&z"}); got != "a=x=y&z&a_b=1&b=2" {
		t.Fatalf("alipaySignContent = %s: want byte order and raw values", got)
	}
	if got := now.In(time.FixedZone("", -5*3600)); alipayTokenParams("a", "c", got)["timestamp"] != "2024-01-01 12:00:00" {
		t.Fatal("the timestamp depends on now's zone")
	}
}

func TestAlipayReplySignatureVector(t *testing.T) {
	_, _, alipayPub := alipayKeys(t)
	r, err := splitAlipayReply([]byte(vecReply), vecReplyRoot)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.raw) != vecReplySigned || r.member != vecReplyRoot || !r.signed {
		t.Fatalf("split = %s %q signed=%v, want the member's bytes as received", r.member, r.raw, r.signed)
	}
	src, err := alipayVerified(alipayPub, r)
	if err != nil {
		t.Fatalf("Alipay's published reply does not verify: %v", err)
	}
	if string(src) != vecReplySigned {
		t.Fatalf("verified source = %s", src)
	}
	// With its `\/` read as `/`, the same reply must not verify: the
	// signature covers the bytes as received.
	unescaped := strings.ReplaceAll(vecReply, `\/`, `/`)
	r2, err := splitAlipayReply([]byte(unescaped), vecReplyRoot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alipayVerified(alipayPub, r2); !errors.Is(err, ErrAlipaySignature) {
		t.Fatalf("un-escaped reply: err = %v, want ErrAlipaySignature", err)
	}
	// Re-serialising the member (as a map would) must not verify either.
	var m map[string]any
	json.Unmarshal([]byte(vecReplySigned), &m)
	re, _ := json.Marshal(m)
	if alipayVerify(alipayPub, re, r.sign) {
		t.Fatal("a re-serialised member verifies")
	}
	// One bit of the signature or of the member flipped.
	sig, _ := base64.StdEncoding.DecodeString(r.sign)
	sig[10] ^= 1
	if alipayVerify(alipayPub, r.raw, base64.StdEncoding.EncodeToString(sig)) {
		t.Fatal("a flipped signature verifies")
	}
	if alipayVerify(alipayPub, bytes.Replace(r.raw, []byte("10000"), []byte("10001"), 1), r.sign) {
		t.Fatal("an altered member verifies")
	}
}

// TestAlipayEscapedSlashFallback: the Java SDK's fallback. A member
// signed with its slashes unescaped but sent with them escaped verifies,
// and what is read is the signed text; the reverse never verifies.
func TestAlipayEscapedSlashFallback(t *testing.T) {
	app, appPub, _ := alipayKeys(t)
	signed := `{"open_id":"a/b","user_id":"x"}`
	sent := `{"alipay_system_oauth_token_response":{"open_id":"a\/b","user_id":"x"},"sign":"` + signAlipay(t, app, signed) + `"}`
	r, err := splitAlipayReply([]byte(sent), alipayTokenRoot)
	if err != nil {
		t.Fatal(err)
	}
	src, err := alipayVerified(appPub, r)
	if err != nil || string(src) != signed {
		t.Fatalf("fallback: src %s, err %v; want %s", src, err, signed)
	}
	u, err := parseAlipayTokenReply([]byte(sent), appPub)
	if err != nil || u.id != "a/b" {
		t.Fatalf("parse = %+v, %v", u, err)
	}
	// Signed escaped, sent unescaped: no `\/` to fall back on.
	signedEsc := `{"open_id":"a\/b"}`
	sentPlain := `{"alipay_system_oauth_token_response":{"open_id":"a/b"},"sign":"` + signAlipay(t, app, signedEsc) + `"}`
	if _, err := parseAlipayTokenReply([]byte(sentPlain), appPub); !errors.Is(err, ErrAlipaySignature) {
		t.Fatalf("reverse: err = %v, want ErrAlipaySignature", err)
	}
}

func TestAlipayTokenReply(t *testing.T) {
	app, appPub, alipayPub := alipayKeys(t)
	signed := func(member, value string) string {
		return `{"` + member + `":` + value + `,"sign":"` + signAlipay(t, app, value) + `"}`
	}
	const code = "4b203fe6c11548bcabd8da5bb087a83b"
	openOK := `{"access_token":"authusrB1","auth_start":"2025-10-15 13:19:21","expires_in":1296000,"re_expires_in":2592000,"refresh_token":"authusrB2","open_id":"083luGU2abc"}`
	userOK := `{"access_token":"authusrB1","alipay_user_id":"2088x","expires_in":1296000,"user_id":"2088102104794936"}`
	errValue := `{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"授权码code无效 ` + code + `"}`
	tests := []struct {
		name      string
		body      string
		key       *rsa.PublicKey // nil: appPub
		wantID    string
		wantField string
		wantCode  StatusCode // of an *Error; 0 with wantSub for an *AlipayError
		wantSig   bool       // wraps ErrAlipaySignature
		wantSub   string
	}{
		{name: "open_id", body: signed(alipayTokenRoot, openOK), wantID: "083luGU2abc", wantField: "open_id"},
		{name: "user_id", body: signed(alipayTokenRoot, userOK), wantID: "2088102104794936", wantField: "user_id"},
		{name: "both", body: signed(alipayTokenRoot, `{"user_id":"2088102104794936","open_id":"083l"}`), wantID: "083l", wantField: "open_id"},
		{name: "code 10000", body: signed(alipayTokenRoot, `{"code":"10000","msg":"Success","open_id":"o1"}`), wantID: "o1", wantField: "open_id"},
		{name: "spaces", body: " \n{ \"sign\" : \"" + signAlipay(t, app, "{ \"open_id\" : \"o2\" }") + "\" ,\n \"alipay_system_oauth_token_response\" :\t{ \"open_id\" : \"o2\" } } \n", wantID: "o2", wantField: "open_id"},
		{name: "cert sn ignored", body: `{"alipay_system_oauth_token_response":{"open_id":"o3"},"alipay_cert_sn":"abc","sign":"` + signAlipay(t, app, `{"open_id":"o3"}`) + `"}`, wantID: "o3", wantField: "open_id"},

		{name: "unsigned success", body: `{"alipay_system_oauth_token_response":` + openOK + `}`, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "empty sign", body: `{"alipay_system_oauth_token_response":` + openOK + `,"sign":""}`, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "mis-signed success", body: `{"alipay_system_oauth_token_response":` + openOK + `,"sign":"` + signAlipay(t, app, userOK) + `"}`, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "other key", body: signed(alipayTokenRoot, openOK), key: alipayPub, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "sign not base64", body: `{"alipay_system_oauth_token_response":` + openOK + `,"sign":"%%%"}`, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "signed error", body: signed(alipayErrorRoot, errValue), wantSub: "isv.code-invalid"},
		{name: "unsigned gateway error", body: `{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}}`, wantSub: "isv.invalid-app-id"},
		{name: "mis-signed error", body: `{"error_response":` + errValue + `,"sign":"` + signAlipay(t, app, openOK) + `"}`, wantCode: StatusSessionKeyRequestError, wantSig: true},
		{name: "error in root", body: signed(alipayTokenRoot, `{"code":"40004","msg":"Business Failed","sub_code":"isv.code-invalid"}`), wantSub: "isv.code-invalid"},
		{name: "error without code", body: `{"error_response":{"msg":"?"}}`, wantSub: ""},

		{name: "empty", body: " \n", wantCode: StatusResponseIsNull},
		{name: "not JSON", body: "<html>", wantCode: StatusJSONParseError},
		{name: "array", body: "[]", wantCode: StatusJSONParseError},
		{name: "trailing", body: signed(alipayTokenRoot, openOK) + "{}", wantCode: StatusJSONParseError},
		{name: "both members", body: `{"alipay_system_oauth_token_response":` + openOK + `,"error_response":` + errValue + `}`, wantCode: StatusJSONParseError},
		{name: "twice", body: `{"alipay_system_oauth_token_response":{"open_id":"evil"},"alipay_system_oauth_token_response":` + openOK + `,"sign":"` + signAlipay(t, app, openOK) + `"}`, wantCode: StatusJSONParseError},
		{name: "sign twice", body: signed(alipayTokenRoot, openOK)[:len(signed(alipayTokenRoot, openOK))-1] + `,"sign":"x"}`, wantCode: StatusJSONParseError},
		{name: "sign not a string", body: `{"alipay_system_oauth_token_response":` + openOK + `,"sign":1}`, wantCode: StatusJSONParseError},
		{name: "no member", body: `{"sign":"x","other_response":{}}`, wantCode: StatusSessionKeyRequestError},
		{name: "member not an object", body: signed(alipayTokenRoot, `"x"`), wantCode: StatusJSONParseError},
		{name: "no id", body: signed(alipayTokenRoot, `{"access_token":"a"}`), wantCode: StatusSessionKeyRequestError},
		{name: "unusable id", body: signed(alipayTokenRoot, `{"open_id":"a|b"}`), wantCode: StatusSessionKeyRequestError},
		{name: "id not a string", body: signed(alipayTokenRoot, `{"user_id":2088}`), wantCode: StatusJSONParseError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			if key == nil {
				key = appPub
			}
			u, err := parseAlipayTokenReply([]byte(tt.body), key, code)
			if tt.wantID != "" {
				if err != nil || u.id != tt.wantID || u.field != tt.wantField {
					t.Fatalf("= %+v, %v; want %s from %s", u, err, tt.wantID, tt.wantField)
				}
				return
			}
			if err == nil {
				t.Fatalf("= %+v, want an error", u)
			}
			if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), "authusrB") {
				t.Errorf("error %q holds the auth code or a token", err)
			}
			var ae *AlipayError
			if tt.wantCode == 0 {
				if !errors.As(err, &ae) || ae.SubCode != tt.wantSub || ae.Code == "" {
					t.Fatalf("err = %v (%T), want an *AlipayError with sub_code %q", err, err, tt.wantSub)
				}
				return
			}
			if Code(err) != tt.wantCode || errors.As(err, &ae) || errors.Is(err, ErrAlipaySignature) != tt.wantSig {
				t.Fatalf("err = %v, want code %d (signature refused: %v)", err, tt.wantCode, tt.wantSig)
			}
		})
	}
}

func TestAlipayErrorText(t *testing.T) {
	e := newAlipayError("40002", "Invalid Arguments", "isv.code-invalid", "授权码code无效 secret-code", "secret-code")
	if got, want := e.Error(), "alipay: code 40002 (Invalid Arguments): isv.code-invalid (授权码code无效 REDACTED)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got := (&AlipayError{Code: "20000"}).Error(); got != "alipay: code 20000" {
		t.Fatalf("Error() = %q", got)
	}
	long := newAlipayError(strings.Repeat("9", 100), strings.Repeat("é", 200), "", "")
	if len(long.Code) != maxAlipayCodeLen || !utf8.ValidString(long.Msg) || len(long.Msg) > maxErrMsgLen {
		t.Fatalf("long fields not cut: %d %d", len(long.Code), len(long.Msg))
	}
	err := alipayAPIError(StatusSessionKeyRequestError, alipayTokenMethod, e)
	if err.Message != "session key request error: alipay.system.oauth.token: Alipay code 40002 (isv.code-invalid)" || !errors.Is(err, e) {
		t.Fatalf("alipayAPIError = %q", err.Message)
	}
	if !alipayCodeRefused(err) || alipayCodeRefused(alipayAPIError(StatusSessionKeyRequestError, "x", &AlipayError{Code: "40002", SubCode: "isv.invalid-app-id"})) {
		t.Fatal("alipayCodeRefused")
	}
}

// alipayPhoneResponse is my.getPhoneNumber's res.response for a
// ciphertext and its sign.
func alipayPhoneResponse(cipherText, sign string) string {
	return `{"response":"` + cipherText + `","sign":"` + sign + `","sign_type":"RSA2","encrypt_type":"AES","charset":"UTF-8"}`
}

// encryptAlipay is Alipay's content encryption, for tests.
func encryptAlipay(t testing.TB, key []byte, plain []byte) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	data := pkcs7(plain)
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(data, data)
	return base64.StdEncoding.EncodeToString(data)
}

func TestAlipayPhoneVector(t *testing.T) {
	app, appPub, alipayPub := alipayKeys(t)
	aesKey, _ := base64.StdEncoding.DecodeString(vecPhoneAESKey)
	if got := encryptAlipay(t, aesKey, []byte(vecPhonePlain)); got != vecPhoneCipher {
		t.Fatalf("ciphertext = %s, want the published %s", got, vecPhoneCipher)
	}
	if got := signAlipay(t, app, `"`+vecPhoneCipher+`"`); got != vecPhoneSign {
		t.Fatalf("sign = %s, want the published %s", got, vecPhoneSign)
	}
	mobile, err := parseAlipayPhone(alipayPhoneResponse(vecPhoneCipher, vecPhoneSign), appPub, aesKey)
	if err != nil || mobile != "13800000000" {
		t.Fatalf("parseAlipayPhone = %q, %v", mobile, err)
	}
	// Key order and escaped slashes do not matter: the signature covers
	// the ciphertext's value in quotes.
	other := `{"charset":"UTF-8","encrypt_type":"AES","sign":"` + vecPhoneSign + `","sign_type":"RSA2","response":` + strings.ReplaceAll(alipayJSON(vecPhoneCipher), "/", `\/`) + `}`
	if mobile, err := parseAlipayPhone(other, appPub, aesKey); err != nil || mobile != "13800000000" {
		t.Fatalf("reordered: %q, %v", mobile, err)
	}
	if _, err := parseAlipayPhone(alipayPhoneResponse(vecPhoneCipher, vecPhoneSign), alipayPub, aesKey); !errors.Is(err, ErrAlipaySignature) {
		t.Fatalf("with another public key: %v, want ErrAlipaySignature", err)
	}
	// The signature without the quotes is not Alipay's.
	if _, err := parseAlipayPhone(alipayPhoneResponse(vecPhoneCipher, signAlipay(t, app, vecPhoneCipher)), appPub, aesKey); !errors.Is(err, ErrAlipaySignature) {
		t.Fatalf("signed without quotes: %v, want ErrAlipaySignature", err)
	}
}

func TestAlipayPhoneFailures(t *testing.T) {
	app, appPub, _ := alipayKeys(t)
	aesKey, _ := base64.StdEncoding.DecodeString(vecPhoneAESKey)
	otherKey := bytes.Repeat([]byte{7}, 16)
	resp := func(plain string, key []byte) string {
		c := encryptAlipay(t, key, []byte(plain))
		return alipayPhoneResponse(c, signAlipay(t, app, `"`+c+`"`))
	}
	signedCipher := func(c string) string { return alipayPhoneResponse(c, signAlipay(t, app, `"`+c+`"`)) }
	tests := []struct {
		name     string
		response string
		wantSig  bool
		wantSub  string // an *AlipayError with this sub-code when not ""
		wantErr  error  // errors.Is, when not nil
	}{
		{name: "unsigned", response: `{"response":"` + vecPhoneCipher + `","sign_type":"RSA2","encrypt_type":"AES"}`, wantSig: true},
		{name: "mis-signed", response: alipayPhoneResponse(vecPhoneCipher, signAlipay(t, app, `"x"`)), wantSig: true},
		{name: "RSA1", response: strings.Replace(alipayPhoneResponse(vecPhoneCipher, vecPhoneSign), `"RSA2"`, `"RSA"`, 1), wantSig: true},
		{name: "clear", response: `{"response":{"code":"10000","mobile":"13800000000"},"sign":"x"}`, wantErr: errAlipayPhoneClear},
		{name: "clear string", response: `{"response":"{\"code\":\"10000\"}","sign":"x"}`, wantErr: errAlipayPhoneClear},
		{name: "other encryption", response: strings.Replace(alipayPhoneResponse(vecPhoneCipher, vecPhoneSign), `"AES"`, `"SM4"`, 1), wantErr: errAlipayPhoneClear},
		{name: "not JSON", response: "13800000000", wantErr: errAlipayPhoneShape},
		{name: "no response", response: `{"sign":"x"}`, wantErr: errAlipayPhoneShape},
		{name: "too long", response: `{"response":"` + strings.Repeat("A", maxAlipayPhoneLen) + `"}`, wantErr: errAlipayPhoneShape},
		{name: "wrong AES key", response: resp(vecPhonePlain, otherKey), wantErr: errAlipayPhoneUndecrypt},
		{name: "not base64", response: signedCipher("%%%%"), wantErr: errAlipayPhoneUndecrypt},
		{name: "partial block", response: signedCipher(base64.StdEncoding.EncodeToString([]byte("0123456789"))), wantErr: errAlipayPhoneUndecrypt},
		{name: "plain not JSON", response: resp("hello", aesKey), wantErr: errAlipayPhoneUndecrypt},
		{name: "not authorised", response: resp(`{"code":"40003","msg":"Insufficient Conditions","subCode":"isv.invalid-auth-relations","subMsg":"无效的授权关系"}`, aesKey), wantSub: "isv.invalid-auth-relations"},
		{name: "snake sub_code", response: resp(`{"code":"40001","msg":"Missing Required Arguments","sub_code":"isv.missing-encrypt-key"}`, aesKey), wantSub: "isv.missing-encrypt-key"},
		{name: "no code", response: resp(`{"mobile":"13800000000"}`, aesKey), wantSub: "-"},
		{name: "no mobile", response: resp(`{"code":"10000","msg":"Success","mobile":""}`, aesKey)},
		{name: "unusable mobile", response: resp(`{"code":"10000","msg":"Success","mobile":"138 0000"}`, aesKey)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mobile, err := parseAlipayPhone(tt.response, appPub, aesKey)
			if err == nil {
				t.Fatalf("= %q, want an error", mobile)
			}
			var ae *AlipayError
			if tt.wantSub != "" {
				if !errors.As(err, &ae) || (tt.wantSub != "-" && ae.SubCode != tt.wantSub) {
					t.Fatalf("err = %v, want an *AlipayError %s", err, tt.wantSub)
				}
				return
			}
			if Code(err) != StatusPhoneNumberError || errors.Is(err, ErrAlipaySignature) != tt.wantSig || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want 6013 (signature refused: %v, cause %v)", err, tt.wantSig, tt.wantErr)
			}
			if strings.Contains(err.Error(), "13800000000") {
				t.Errorf("error %q holds the phone number", err)
			}
		})
	}
}

// The fuzz targets below run in CI like those of fuzz_test.go. Each
// checks invariants on any input: no panic, errors of the documented
// kinds, and what is accepted is well formed.

func FuzzSplitAlipayReply(f *testing.F) {
	f.Add([]byte(vecReply), true)
	f.Add([]byte(`{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}}`), false)
	f.Add([]byte(`{"alipay_system_oauth_token_response":{"open_id":"a\/b"},"sign":"PAb3"}`), false)
	f.Add([]byte(`{"alipay_system_oauth_token_response":1,"alipay_system_oauth_token_response":2}`), false)
	f.Add([]byte(` {"sign":"x" , "error_response" : [1,{"a":"\u00e9"}] } `), false)
	f.Add([]byte(`{"a":{"sign":"x","error_response":{}}}`), false)
	f.Add([]byte(`{`), false)
	f.Add([]byte(``), false)
	f.Add([]byte(strings.Repeat(`{"error_response":`, 3000)), false)
	_, _, alipayPub := alipayKeys(f)
	f.Fuzz(func(t *testing.T, body []byte, vector bool) {
		root := alipayTokenRoot
		if vector {
			root = vecReplyRoot
		}
		r, err := splitAlipayReply(body, root)
		if err != nil {
			switch Code(err) {
			case StatusResponseIsNull, StatusJSONParseError, StatusSessionKeyRequestError:
			default:
				t.Fatalf("err = %v, want 6003, 6004 or 6008", err)
			}
			return
		}
		if r.member != root && r.member != alipayErrorRoot {
			t.Fatalf("member %q", r.member)
		}
		// raw is the member's value as it stands in the body: valid JSON,
		// without the spaces around it, found at its place.
		if !json.Valid(r.raw) || len(bytes.TrimSpace(r.raw)) != len(r.raw) || !bytes.Contains(body, r.raw) {
			t.Fatalf("raw %q is not a JSON value of the body", r.raw)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("split accepted a body that is not a JSON object: %v", err)
		}
		if !bytes.Equal(m[r.member], r.raw) {
			t.Fatalf("raw %q, but the member's value is %q", r.raw, m[r.member])
		}
		src, err := alipayVerified(alipayPub, r)
		switch {
		case err == nil && r.signed && !alipayVerify(alipayPub, src, r.sign):
			t.Fatal("alipayVerified returned bytes the signature does not cover")
		case err == nil && !r.signed && r.member != alipayErrorRoot:
			t.Fatal("an unsigned success was accepted")
		case err != nil && !errors.Is(err, ErrAlipaySignature):
			t.Fatalf("err = %v, want ErrAlipaySignature", err)
		}
	})
}

func FuzzAlipayTokenMember(f *testing.F) {
	f.Add(`{"access_token":"authusrB1","expires_in":1296000,"open_id":"083luGU2abc"}`, false)
	f.Add(`{"user_id":"2088102104794936","alipay_user_id":"x"}`, false)
	f.Add(`{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"`+fuzzSecret+`"}`, true)
	f.Add(`{"code":"10000","open_id":"a|b"}`, false)
	f.Add(`{"open_id":"\u0000"}`, false)
	f.Add(`{"sub_msg":"`+strings.Repeat("é", 300)+`"}`, true)
	f.Add(`null`, false)
	f.Add(`[]`, true)
	f.Fuzz(func(t *testing.T, src string, isError bool) {
		member := alipayTokenRoot
		if isError {
			member = alipayErrorRoot
		}
		u, err := readAlipayTokenMember(member, []byte(src), fuzzSecret)
		var ae *AlipayError
		switch {
		case err == nil:
			if isError || !validUserID(u.id) || (u.field != "open_id" && u.field != "user_id") {
				t.Fatalf("accepted %+v from %s", u, member)
			}
		case errors.As(err, &ae):
			if strings.Contains(err.Error(), fuzzSecret) || !utf8.ValidString(err.Error()) ||
				len(ae.Code) > maxAlipayCodeLen || len(ae.SubCode) > maxAlipayCodeLen || len(ae.Msg) > maxErrMsgLen || len(ae.SubMsg) > maxErrMsgLen || ae.Code == "" {
				t.Fatalf("AlipayError %q: secret, invalid UTF-8, too long or no code", err)
			}
		default:
			if c := Code(err); c != StatusJSONParseError && c != StatusSessionKeyRequestError {
				t.Fatalf("err = %v, want 6004 or 6008", err)
			}
		}
	})
}

func FuzzAlipayPhone(f *testing.F) {
	f.Add(alipayPhoneResponse(vecPhoneCipher, vecPhoneSign))
	f.Add(`{"response":"` + vecPhoneCipher + `","sign":"` + vecPhoneSign + `"}`)
	f.Add(`{"response":{"code":"10000"},"sign":"x"}`)
	f.Add(`{"response":"{","sign":"x","sign_type":"RSA"}`)
	f.Add(`{"response":null}`)
	f.Add(`"x"`)
	f.Add(``)
	_, appPub, _ := alipayKeys(f)
	aesKey, _ := base64.StdEncoding.DecodeString(vecPhoneAESKey)
	f.Fuzz(func(t *testing.T, response string) {
		mobile, err := parseAlipayPhone(response, appPub, aesKey)
		var ae *AlipayError
		switch {
		case err == nil:
			if !validPhoneField(mobile, false) {
				t.Fatalf("accepted mobile %q", mobile)
			}
		case errors.As(err, &ae):
		case Code(err) != StatusPhoneNumberError:
			t.Fatalf("err = %v, want 6013", err)
		}
	})
}

func FuzzAlipayPhonePlain(f *testing.F) {
	f.Add([]byte(vecPhonePlain))
	f.Add([]byte(`{"code":"40003","subCode":"isv.invalid-auth-relations","subMsg":"x"}`))
	f.Add([]byte(`{"code":"10000","mobile":""}`))
	f.Add([]byte(`{"code":"10000","mobile":"+8613800000000"}`))
	f.Add([]byte(`{"code":10000}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, plain []byte) {
		mobile, err := readAlipayPhonePlain(plain)
		var ae *AlipayError
		switch {
		case err == nil:
			if !validPhoneField(mobile, false) {
				t.Fatalf("accepted mobile %q", mobile)
			}
		case errors.As(err, &ae):
			if ae.Code == "" || ae.Code == alipayCodeOK || !utf8.ValidString(err.Error()) {
				t.Fatalf("AlipayError %+v", ae)
			}
		case Code(err) != StatusPhoneNumberError:
			t.Fatalf("err = %v, want 6013", err)
		}
	})
}
