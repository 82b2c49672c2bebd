package mpauthx

import (
	"crypto/rand"
	"crypto/rsa"
	"path/filepath"
	"testing"
)

// TestPlatformEndpoints: each platform's default API servers, and every
// endpoint under APIBase when it is set.
func TestPlatformEndpoints(t *testing.T) {
	db, err := OpenSQLite(filepath.Join(t.TempDir(), "urls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		platform Platform
		apiBase  string
		get      func(c *Client) []string
		want     []string
	}{
		{QQMiniProgram, "", func(c *Client) []string { return []string{c.sessionURL} },
			[]string{"https://api.q.qq.com/sns/jscode2session"}},
		{WeChatOfficialAccount, "", func(c *Client) []string { return []string{c.oauthURL, c.authorizeURL, c.stableTokenURL} },
			[]string{"https://api.weixin.qq.com/sns/oauth2/access_token", "https://open.weixin.qq.com/connect/oauth2/authorize", "https://api.weixin.qq.com/cgi-bin/stable_token"}},
		{WeChatWebsite, "", func(c *Client) []string { return []string{c.oauthURL, c.authorizeURL} },
			[]string{"https://api.weixin.qq.com/sns/oauth2/access_token", "https://open.weixin.qq.com/connect/qrconnect"}},
		{DouyinMiniProgram, "", func(c *Client) []string { return []string{c.douyinSessionURL, c.douyinPhoneURL, c.douyinTokenURL} },
			[]string{"https://developer.toutiao.com/api/apps/v2/jscode2session", "https://open.douyin.com/api/apps/v1/get_phonenumber_info/", "https://open.douyin.com/oauth/client_token/"}},
		{DouyinMiniProgram, "http://127.0.0.1:9/", func(c *Client) []string { return []string{c.douyinSessionURL, c.douyinPhoneURL, c.douyinTokenURL} },
			[]string{"http://127.0.0.1:9/api/apps/v2/jscode2session", "http://127.0.0.1:9/api/apps/v1/get_phonenumber_info/", "http://127.0.0.1:9/oauth/client_token/"}},
		{WeChatWebsite, "http://127.0.0.1:9", func(c *Client) []string { return []string{c.oauthURL, c.authorizeURL} },
			[]string{"http://127.0.0.1:9/sns/oauth2/access_token", "http://127.0.0.1:9/connect/qrconnect"}},
	}
	for _, tt := range tests {
		c, err := New(Config{AppID: "app", AppSecret: "s", Sku: "sku", DB: db, RedisAddr: "127.0.0.1:1", Platform: tt.platform, APIBase: tt.apiBase})
		if err != nil {
			t.Fatal(err)
		}
		got := tt.get(c)
		c.Close()
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s (APIBase %q): %s, want %s", tt.platform, tt.apiBase, got[i], tt.want[i])
			}
		}
	}
}

// TestDouyinDecryptBlocks: data of several key-sized blocks decrypts
// block by block; a truncated one does not.
func TestDouyinDecryptBlocks(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	var ct []byte
	for _, part := range []string{`{"purePhoneNumber":"13800138000",`, `"watermark":{"appid":"tt1"}}`} {
		//lint:ignore SA1019 Douyin's scheme.
		b, err := rsa.EncryptPKCS1v15(rand.Reader, &key.PublicKey, []byte(part))
		if err != nil {
			t.Fatal(err)
		}
		ct = append(ct, b...)
	}
	plain, err := douyinDecrypt(key, ct)
	if err != nil {
		t.Fatal(err)
	}
	p, appID, err := parseDouyinPhonePlain(plain)
	if err != nil || p.PurePhoneNumber != "13800138000" || p.CountryCode != "86" || appID != "tt1" {
		t.Fatalf("= %+v, %q, %v", p, appID, err)
	}
	if _, err := douyinDecrypt(key, ct[:len(ct)-1]); err == nil {
		t.Error("a truncated ciphertext decrypts")
	}
}
