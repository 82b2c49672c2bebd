package mpauthx

import (
	"testing"
	"time"
)

func FuzzParseClientTokenReply(f *testing.F) {
	f.Add([]byte(`{"data":{"access_token":"clt.75c380db41e8159","description":"","error_code":0,"expires_in":7200},"message":"success"}`))
	f.Add([]byte(`{"data":{"access_token":"clt.x","error_code":0,"expires_in":"7200"}}`))
	f.Add([]byte(`{"data":{"access_token":"","description":"client_key 或者 client_secret 报错","error_code":10013,"expires_in":0},"message":"error"}`))
	f.Add([]byte(`{"data":{"access_token":"clt x","expires_in":7200}}`))
	f.Add([]byte(`{"data":{"access_token":"clt.x","expires_in":-1}}`))
	f.Add([]byte(`{"data":{"access_token":"clt.x","expires_in":1e30}}`))
	f.Add([]byte(`{"data":{"access_token":"clt.x","expires_in":"  7"}}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`{"err_no":40015,"err_tips":"bad appid"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		token, ttl, err := parseClientTokenReply(body)
		if err != nil {
			if token != "" || ttl != 0 {
				t.Errorf("parseClientTokenReply returned %q, %v with error %v", token, ttl, err)
			}
			checkReplyError(t, err, StatusAccessTokenError)
			return
		}
		if !validAccessToken(token) || ttl <= 0 || ttl > 24*time.Hour {
			t.Fatalf("parseClientTokenReply = %q, %v: not a usable token and lifetime", token, ttl)
		}
	})
}
