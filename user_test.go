package mpauthx_test

import (
	"encoding/json"
	"testing"

	"github.com/seeda8e74ca0/mpauthx"
)

// TestUserJSON: a User encodes with camelCase names, as Phone and
// UserInfo do, and decodes back to itself.
func TestUserJSON(t *testing.T) {
	u := mpauthx.User{ID: "u1", OpenID: "o1", UnionID: "u1", Phone: "13800138000",
		NickName: "n", City: "c", Province: "p", Country: "CN", Language: "zh_CN", Gender: 2,
		Identities: []mpauthx.Identity{{Platform: mpauthx.WeChatMiniProgram, AppID: "wx1", OpenID: "o1", UnionID: "u1"}}}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"u1","openId":"o1","unionId":"u1","phone":"13800138000","nickName":"n","city":"c","province":"p","country":"CN","language":"zh_CN","gender":2,"identities":[{"platform":"wechat","appId":"wx1","openId":"o1","unionId":"u1"}]}`
	if string(b) != want {
		t.Fatalf("json.Marshal(User) =\n%s\nwant\n%s", b, want)
	}
	var back mpauthx.User
	if err := json.Unmarshal(b, &back); err != nil || back.ID != u.ID || back.Phone != u.Phone || back.Gender != u.Gender || len(back.Identities) != 1 || back.Identities[0] != u.Identities[0] {
		t.Fatalf("decoded %+v, %v; want %+v", back, err, u)
	}
	b, err = json.Marshal(mpauthx.User{ID: "o2", OpenID: "o2"})
	if want := `{"id":"o2","openId":"o2","nickName":"","city":"","province":"","country":"","language":"","gender":0}`; err != nil || string(b) != want {
		t.Fatalf("json.Marshal(a User without unionid, phone or identities) = %s, %v; want %s", b, err, want)
	}
}
