package mpauthxtest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AlipayGatewayPath is the path of Alipay's open API gateway, relative to
// Server.URL. The Server answers alipay.system.oauth.token there for the
// users of its Alipay apps (AddApp with Platform "alipay").
//
// The gateway checks a request as Alipay's does, in this order, and
// answers the first failure with an error_response: app_id must be an
// Alipay app of the Server (40002 isv.invalid-app-id), method, charset,
// format, sign_type, timestamp, version and sign must be there (40001
// isv.missing-<name>), sign_type RSA2 (40002
// isv.invalid-signature-type), the timestamp "yyyy-MM-dd HH:mm:ss" in
// Beijing time (UTC+8) within AlipayTimestampSkew of the real time (40002
// isv.invalid-timestamp), the sign the app's RSA2 signature of the sorted
// parameters (40002 isv.invalid-signature), the method
// alipay.system.oauth.token (40002 isv.invalid-method); those errors are
// unsigned, like the gateway's own. Then grant_type must be
// authorization_code (isv.grant-type-invalid), and code one of the app's
// login codes, not used yet (isv.code-invalid, also for a used code, as
// Alipay does); those errors are signed, like Alipay's business errors.
//
// A success is {"alipay_system_oauth_token_response":{access_token,
// auth_start, expires_in, re_expires_in, refresh_token, and open_id or
// user_id},"sign":"..."}, signed RSA2 with the fake Alipay's key (the
// public half is App.AlipayPublicKey; AlipaySign signs with the private
// half). The user's OpenID comes as user_id when it reads like an Alipay
// user_id ("2088" and 12 digits: an older app's user), else as open_id
// (an app in OpenID mode, every new app). The member's slashes are
// escaped as `\/`, as Alipay's are (its access_token always has one), and
// the signature covers the bytes as sent: a client that re-serialises the
// member, or reads `\/` as `/`, before verifying fails every time.
//
// On this path, a Fault's ErrCode is Alipay's code (such as 40004 or
// 20000) and its ErrMsg the sub_code (such as "isv.code-invalid"),
// answered unsigned; give a Fault a Body from AlipayReply for a signed
// one, or for a success signed with the wrong key.
const AlipayGatewayPath = "/gateway.do"

// AlipayTimestampSkew is how far the timestamp of an Alipay request may
// be from the real time. Alipay's own tolerance is not documented where
// we looked.
const AlipayTimestampSkew = 15 * time.Minute

func init() {
	addEndpoint(AlipayGatewayPath, (*Server).handleAlipayGateway, alipayFaultBody)
}

// alipayZone is Beijing time, the zone of the gateway's timestamps.
var alipayZone = time.FixedZone("UTC+8", 8*60*60)

// alipayUserID matches the user_id of an older Alipay app's user.
var alipayUserID = regexp.MustCompile(`^2088[0-9]{12}$`)

// alipayMsgs are the gateway's msg for its codes.
var alipayMsgs = map[string]string{
	"20000": "Service Currently Unavailable",
	"20001": "Insufficient Token Permissions",
	"40001": "Missing Required Arguments",
	"40002": "Invalid Arguments",
	"40004": "Business Failed",
	"40006": "Insufficient Permissions",
}

// alipaySubMsgs are sub_msgs for the sub_codes the Server sends.
var alipaySubMsgs = map[string]string{
	"isv.invalid-app-id":         "无效的AppID参数",
	"isv.invalid-signature-type": "无效的签名类型",
	"isv.invalid-timestamp":      "非法的时间戳参数",
	"isv.invalid-signature":      "验签出错",
	"isv.invalid-method":         "不存在的方法名",
	"isv.grant-type-invalid":     "grant_type参数不正确",
	"isv.code-invalid":           "授权码code无效",
}

// alipayFaultBody writes a Fault's ErrCode as the gateway's unsigned
// error_response, with ErrMsg as its sub_code.
func alipayFaultBody(code int, subCode string) []byte {
	return alipayErrorJSON(strconv.Itoa(code), subCode)
}

// alipayErrorJSON is an unsigned {"error_response":{...}}.
func alipayErrorJSON(code, subCode string) []byte {
	return append(append([]byte(`{"error_response":`), alipayErrorMember(code, subCode)...), '}')
}

// alipayErrorMember is the value of an error_response.
func alipayErrorMember(code, subCode string) []byte {
	msg := alipayMsgs[code]
	if msg == "" {
		msg = "Error"
	}
	v := map[string]string{"code": code, "msg": msg}
	if subCode != "" {
		v["sub_code"] = subCode
		if sm := alipaySubMsgs[subCode]; sm != "" {
			v["sub_msg"] = sm
		} else {
			v["sub_msg"] = subCode
		}
	}
	return alipayEscape(mustJSON(v))
}

// alipayEscape escapes the slashes of JSON as Alipay does (`\/`); in
// JSON, '/' stands inside strings only.
func alipayEscape(b []byte) []byte { return bytes.ReplaceAll(b, []byte("/"), []byte(`\/`)) }

// alipaySignContent is the string a request's sign covers: the sorted
// key=value pairs of its non-empty parameters but sign, raw, joined by
// '&'.
func alipaySignContent(form map[string][]string) string {
	keys := make([]string, 0, len(form))
	for k, v := range form {
		if k != "sign" && len(v) > 0 && v[0] != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + form[k][0]
	}
	return strings.Join(pairs, "&")
}

// rsa2Sign is the RSA2 signature (SHA256withRSA, PKCS#1 v1.5) of content,
// standard base64.
func rsa2Sign(key *rsa.PrivateKey, content []byte) string {
	h := sha256.Sum256(content)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// handleAlipayGateway answers the gateway (see AlipayGatewayPath).
func (s *Server) handleAlipayGateway(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html;charset=utf-8") // as Alipay's gateway labels its JSON
	if s.fault(w, r, AlipayGatewayPath) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		w.Write(alipayErrorJSON("40002", "isv.invalid-parameter"))
		return
	}
	form := r.Form
	appID := form.Get("app_id")
	a, ok := s.app(appID)
	appKey, platformKey, _ := s.appKeys(appID)
	if !ok || a.Platform != platformAlipay {
		w.Write(alipayErrorJSON("40002", "isv.invalid-app-id"))
		return
	}
	for _, p := range []string{"method", "charset", "format", "sign_type", "timestamp", "version", "sign"} {
		if form.Get(p) == "" {
			w.Write(alipayErrorJSON("40001", "isv.missing-"+strings.ReplaceAll(p, "_", "-")))
			return
		}
	}
	if form.Get("sign_type") != "RSA2" {
		w.Write(alipayErrorJSON("40002", "isv.invalid-signature-type"))
		return
	}
	ts, err := time.ParseInLocation("2006-01-02 15:04:05", form.Get("timestamp"), alipayZone)
	if d := time.Since(ts); err != nil || d > AlipayTimestampSkew || d < -AlipayTimestampSkew {
		w.Write(alipayErrorJSON("40002", "isv.invalid-timestamp"))
		return
	}
	sig, err := base64.StdEncoding.DecodeString(form.Get("sign"))
	h := sha256.Sum256([]byte(alipaySignContent(form)))
	if err != nil || rsa.VerifyPKCS1v15(&appKey.PublicKey, crypto.SHA256, h[:], sig) != nil {
		w.Write(alipayErrorJSON("40002", "isv.invalid-signature"))
		return
	}
	if form.Get("method") != "alipay.system.oauth.token" {
		w.Write(alipayErrorJSON("40002", "isv.invalid-method"))
		return
	}
	signedErr := func(subCode string) {
		w.Write(alipayReply(platformKey, "error_response", alipayErrorMember("40002", subCode)))
	}
	if form.Get("grant_type") != "authorization_code" {
		signedErr("isv.grant-type-invalid")
		return
	}
	u, code := s.useCode(appID, form.Get("code"))
	if code != 0 {
		signedErr("isv.code-invalid")
		return
	}
	idField := "open_id"
	if alipayUserID.MatchString(u.OpenID) {
		idField = "user_id"
	}
	member := alipayEscape(mustJSON(map[string]any{
		"access_token":  "authusrB/" + base64.RawStdEncoding.EncodeToString(randomBytes(24)), // a '/', escaped on the wire
		"auth_start":    time.Now().In(alipayZone).Format("2006-01-02 15:04:05"),
		"expires_in":    1296000,
		"re_expires_in": 2592000,
		"refresh_token": "authusrB" + base64.RawURLEncoding.EncodeToString(randomBytes(24)),
		idField:         u.OpenID,
	}))
	w.Write(alipayReply(platformKey, "alipay_system_oauth_token_response", member))
}

// alipayReply is {"<member>":value,"sign":"..."}, value signed as is.
func alipayReply(key *rsa.PrivateKey, member string, value []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"`)
	b.WriteString(member)
	b.WriteString(`":`)
	b.Write(value)
	b.WriteString(`,"sign":"`)
	b.WriteString(rsa2Sign(key, value))
	b.WriteString(`"}`)
	return b.Bytes()
}

// alipayApp returns the Alipay app appID's fake Alipay key and its AES
// key, or panics, naming the caller.
func (s *Server) alipayApp(caller, appID string) (platformKey *rsa.PrivateKey, aesKey []byte) {
	a, ok := s.app(appID)
	_, platformKey, _ = s.appKeys(appID)
	if !ok || a.Platform != platformAlipay {
		panic(fmt.Sprintf("mpauthxtest: %s: %q is not an Alipay app of the Server", caller, appID))
	}
	aesKey, err := base64.StdEncoding.DecodeString(a.AESKey)
	if err != nil || (len(aesKey) != 16 && len(aesKey) != 24 && len(aesKey) != 32) {
		panic(fmt.Sprintf("mpauthxtest: %s: the AESKey of %q is not base64 of an AES key", caller, appID))
	}
	return platformKey, aesKey
}

// AlipaySign returns the fake Alipay's RSA2 signature of content for the
// Alipay app appID (standard base64), which its App.AlipayPublicKey
// verifies. It panics when appID is not an Alipay app of the Server.
func (s *Server) AlipaySign(appID string, content []byte) string {
	key, _ := s.alipayApp("AlipaySign", appID)
	return rsa2Sign(key, content)
}

// AlipayReply returns a gateway reply {"<member>":value,"sign":"..."}
// for the Alipay app appID, value signed by the fake Alipay exactly as
// given, for a Fault's Body: a signed error_response, a success of your
// making, or (with value changed after signing it yourself with
// AlipaySign) a mis-signed one. It panics when appID is not an Alipay
// app of the Server.
func (s *Server) AlipayReply(appID, member string, value []byte) []byte {
	key, _ := s.alipayApp("AlipayReply", appID)
	return alipayReply(key, member, value)
}

// AlipayPhoneResponse returns what my.getPhoneNumber gives the user's
// mini program as res.response, to pass to mpauthx's PhoneNumber or
// AuthorizePhone: {"response":"<base64>","sign":"...","sign_type":"RSA2",
// "encrypt_type":"AES","charset":"UTF-8"}, where response is
// {"code":"10000","msg":"Success","mobile":<the user's Phone>} encrypted
// with AES-CBC under the app's AESKey, a zero IV and PKCS#7 padding, and
// sign the fake Alipay's signature of the ciphertext in quotes. It
// panics when the user is unknown or not of an Alipay app.
func (s *Server) AlipayPhoneResponse(openID string) string {
	u, a := s.user("AlipayPhoneResponse", openID)
	if a.Platform != platformAlipay {
		panic(fmt.Sprintf("mpauthxtest: AlipayPhoneResponse: user %q is not of an Alipay app", openID))
	}
	return s.AlipayEncryptPhone(a.AppID, mustJSON(map[string]string{"code": "10000", "msg": "Success", "mobile": u.Phone}))
}

// AlipayEncryptPhone returns a my.getPhoneNumber response, like
// AlipayPhoneResponse's, whose content is plaintext, such as an error
// ({"code":"40003","msg":"Insufficient Conditions","subCode":
// "isv.invalid-auth-relations","subMsg":"..."}) or a reply without a
// mobile. It panics when appID is not an Alipay app of the Server.
func (s *Server) AlipayEncryptPhone(appID string, plaintext []byte) string {
	key, aesKey := s.alipayApp("AlipayEncryptPhone", appID)
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	data := pkcs7Pad(plaintext, aes.BlockSize)
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(data, data)
	ct := base64.StdEncoding.EncodeToString(data)
	return string(mustJSON(map[string]string{
		"response":     ct,
		"sign":         rsa2Sign(key, []byte(`"`+ct+`"`)),
		"sign_type":    "RSA2",
		"encrypt_type": "AES",
		"charset":      "UTF-8",
	}))
}
