package mpauthxtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
)

// The paths of Douyin's APIs the Server answers, relative to Server.URL
// (under the one APIBase, though Douyin serves code2session from
// developer.toutiao.com and the phone number from open.douyin.com).
const (
	DouyinCode2SessionPath = "/api/apps/v2/jscode2session"
	DouyinPhoneNumberPath  = "/api/apps/v1/get_phonenumber_info/"
)

// Douyin's err_no values the Server answers with on its own.
const (
	DouyinErrBadParams = 40014 // a parameter is missing, or the body is not JSON
	DouyinErrBadAppID  = 40015 // appid is not a Douyin app of the Server
	DouyinErrBadSecret = 40017 // secret is not the app's
	DouyinErrBadCode   = 40018 // code is unknown, of another app, or used
	// DouyinErrPhoneCode is the Server's err_no for a phone code that is
	// unknown, used, of another app or older than PhoneCodeLifetime. A
	// third-party SDK reports it as Douyin's for an expired code; Douyin's
	// documentation we found does not confirm it.
	DouyinErrPhoneCode = 28005187
)

func init() {
	addEndpoint(DouyinCode2SessionPath, (*Server).handleDouyinCode2Session, douyinErrBody("err_tips"))
	addEndpoint(DouyinPhoneNumberPath, (*Server).handleDouyinPhoneNumber, douyinErrBody("err_msg"))
}

// douyinErrBody writes a Fault's ErrCode as Douyin does: err_no, and the
// message under msgField.
func douyinErrBody(msgField string) func(code int, msg string) []byte {
	return func(code int, msg string) []byte {
		if msg == "" {
			msg = douyinErrMsg(code)
		}
		return mustJSON(map[string]any{"err_no": code, msgField: msg, "log_id": newLogID()})
	}
}

// douyinErrMsg is a Douyin-like message for err_no code.
func douyinErrMsg(code int) string {
	switch code {
	case -1:
		return "system error"
	case DouyinErrBadParams:
		return "bad params"
	case DouyinErrBadAppID:
		return "bad appid"
	case DouyinErrBadSecret:
		return "bad secret"
	case DouyinErrBadCode:
		return "bad code"
	case DouyinErrPhoneCode:
		return "code expired or invalid"
	}
	return "error"
}

// newLogID returns a request id in the style of Douyin's log_id.
func newLogID() string {
	return time.Now().UTC().Format("20060102150405") + base64.RawURLEncoding.EncodeToString(randomBytes(9))
}

// writeDouyin answers a Douyin API with v as JSON.
func writeDouyin(w http.ResponseWriter, v any) {
	w.Write(mustJSON(v))
}

// writeDouyinErr answers a Douyin API with err_no code, its message under
// msgField.
func writeDouyinErr(w http.ResponseWriter, msgField string, code int) {
	w.Write(douyinErrBody(msgField)(code, ""))
}

// douyinSessionRequest is code2session v2's JSON body.
type douyinSessionRequest struct {
	AppID         string `json:"appid"`
	Secret        string `json:"secret"`
	Code          string `json:"code"`
	AnonymousCode string `json:"anonymous_code"`
}

// douyinSession is code2session v2's data.
type douyinSession struct {
	SessionKey      string `json:"session_key"`
	OpenID          string `json:"openid"`
	AnonymousOpenID string `json:"anonymous_openid"`
	UnionID         string `json:"unionid"`
}

// handleDouyinCode2Session answers code2session v2 (POST JSON
// {appid, secret, code}) for the codes of Douyin users: {"err_no":0,
// "err_tips":"success","data":{session_key, openid, anonymous_openid,
// unionid}}, or err_no 40014, 40015, 40017 or 40018.
func (s *Server) handleDouyinCode2Session(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if s.fault(w, r, DouyinCode2SessionPath) {
		return
	}
	var req douyinSessionRequest
	if r.Method != http.MethodPost || json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req) != nil || req.Code == "" {
		writeDouyinErr(w, "err_tips", DouyinErrBadParams)
		return
	}
	a, code := s.credentials(req.AppID, req.Secret, platformDouyin)
	switch code {
	case ErrCodeInvalidAppID:
		writeDouyinErr(w, "err_tips", DouyinErrBadAppID)
		return
	case ErrCodeInvalidSecret:
		writeDouyinErr(w, "err_tips", DouyinErrBadSecret)
		return
	}
	u, code := s.useCode(a.AppID, req.Code)
	if code != 0 {
		msg := "bad code"
		if code == ErrCodeCodeUsed {
			msg = "code has been used"
		}
		writeDouyin(w, map[string]any{"err_no": DouyinErrBadCode, "err_tips": msg, "log_id": newLogID()})
		return
	}
	writeDouyin(w, map[string]any{"err_no": 0, "err_tips": "success", "log_id": newLogID(),
		"data": douyinSession{SessionKey: u.SessionKey, OpenID: u.OpenID, UnionID: u.UnionID}})
}

// douyinPhonePlain is the plaintext of get_phonenumber_info's data.
type douyinPhonePlain struct {
	PhoneNumber     string    `json:"phoneNumber"`
	PurePhoneNumber string    `json:"purePhoneNumber"`
	CountryCode     string    `json:"countryCode"`
	Watermark       watermark `json:"watermark"`
}

// handleDouyinPhoneNumber answers get_phonenumber_info (POST JSON {code},
// header access-token) for the phone codes of Douyin users (PhoneCode):
// {"err_no":0,"err_msg":"","data":"<base64>"}, where data is the phone
// number, with the app's watermark, encrypted with RSA PKCS#1 v1.5 to
// the app's PublicKey. An access-token that is not live gets the errcode
// WeChat's APIs give (40001, 41001 or 42001) as err_no: Douyin's own
// value is not documented where we looked.
func (s *Server) handleDouyinPhoneNumber(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if s.fault(w, r, DouyinPhoneNumberPath) {
		return
	}
	if !s.ClientTokenValid(r.Header.Get("access-token")) {
		writeDouyinErr(w, "err_msg", DouyinErrCodeInvalidToken)
		return
	}
	var req struct {
		Code string `json:"code"`
	}
	if r.Method != http.MethodPost || json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req) != nil || req.Code == "" {
		writeDouyinErr(w, "err_msg", DouyinErrBadParams)
		return
	}
	s.mu.Lock()
	appID := ""
	if p, ok := s.phoneCodes[req.Code]; ok {
		if u, ok := s.users[p.openID]; ok {
			if a := s.appOf(u); a.Platform == platformDouyin {
				appID = a.AppID
			}
		}
	}
	s.mu.Unlock()
	u, code := s.usePhoneCode(appID, req.Code)
	if appID == "" || code != 0 {
		writeDouyinErr(w, "err_msg", DouyinErrPhoneCode)
		return
	}
	key, _, _ := s.appKeys(appID)
	cc := u.CountryCode
	if cc == "" {
		cc = "86"
	}
	full := u.Phone
	if cc != "86" {
		full = "+" + cc + u.Phone
	}
	plain := mustJSON(douyinPhonePlain{PhoneNumber: full, PurePhoneNumber: u.Phone, CountryCode: cc,
		Watermark: watermark{Timestamp: time.Now().Unix(), AppID: appID}})
	writeDouyin(w, map[string]any{"err_no": 0, "err_msg": "", "log_id": newLogID(),
		"data": base64.StdEncoding.EncodeToString(rsaEncrypt(&key.PublicKey, plain))})
}

// rsaEncrypt encrypts plain to pub with RSA PKCS#1 v1.5, as Douyin does.
func rsaEncrypt(pub *rsa.PublicKey, plain []byte) []byte {
	//lint:ignore SA1019 Douyin encrypts phone numbers with PKCS#1 v1.5; the fake must too.
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, plain)
	if err != nil {
		panic("mpauthxtest: " + err.Error())
	}
	return ct
}

// EncryptPhoneData encrypts plaintext to the PublicKey of the Douyin app
// appID as get_phonenumber_info's data, so that a test can hand mpauthx
// data of its own making (another app's watermark, a malformed number)
// through a Fault's Body: {"err_no":0,"data":"<the result>"}. It panics
// when appID is not a Douyin app of the Server or plaintext is too long
// for one RSA block.
func (s *Server) EncryptPhoneData(appID string, plaintext []byte) string {
	a, ok := s.app(appID)
	key, _, _ := s.appKeys(appID)
	if !ok || a.Platform != platformDouyin {
		panic("mpauthxtest: EncryptPhoneData: " + appID + " is not a Douyin app of the Server")
	}
	return base64.StdEncoding.EncodeToString(rsaEncrypt(&key.PublicKey, plaintext))
}
