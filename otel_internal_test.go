package mpauthx

import (
	"strings"
	"sync/atomic"
	"testing"
)

func TestPlatformErrorCode(t *testing.T) {
	tests := []struct {
		body string
		code string
		bad  bool
	}{
		{`{"openid":"o","session_key":"k"}`, "", false},
		{`{"errcode":0,"errmsg":"ok"}`, "", false},
		{` {"errcode":40029,"errmsg":"invalid code"}`, "40029", true},
		{`{"errcode":-1,"errmsg":"busy"}`, "-1", true},
		{`{"errcode":"40163"}`, "40163", true},
		{`{"errcode":null}`, "", false},
		{`{"err_no":0,"err_tips":"success","data":{"openid":"o"}}`, "", false},
		{`{"err_no":40018,"err_tips":"bad code"}`, "40018", true},
		{`{"err_no":0,"data":"c2VjcmV0"}`, "", false},
		{`{"data":{"access_token":"clt.x","error_code":0},"message":"success"}`, "", false},
		{`{"data":{"error_code":10013,"description":"bad key"},"message":"error"}`, "10013", true},
		{`{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid"},"sign":"x"}`, "40002", true},
		{`{"error_response":{}}`, "error_response", true},
		{`{"alipay_system_oauth_token_response":{"user_id":"2088"},"sign":"x"}`, "", false},
		{"\x89PNG\r\n", "", false},
		{`<html>502</html>`, "", false},
		{``, "", false},
		{`{"errcode":40029`, "", false},
		{`{"errcode":"` + strings.Repeat("9", 100) + `"}`, strings.Repeat("9", 32), true},
		// What the platform sends becomes an attribute value: printable
		// ASCII only, so that a cut rune or a control byte cannot make
		// an exporter refuse the span (OTLP's strings must be UTF-8).
		{`{"errcode":"` + strings.Repeat("9", 31) + `é"}`, strings.Repeat("9", 31) + "_", true},
		{"{\"errcode\":\"4\xff2\"}", "4_2", true},
		{`{"error_response":{"code":"isv.bad-x_1"}}`, "isv.bad-x_1", true},
	}
	for _, tt := range tests {
		code, bad := platformErrorCode([]byte(tt.body))
		if bad != tt.bad || (bad && code != tt.code) {
			t.Errorf("platformErrorCode(%.40q) = %q, %v; want %q, %v", tt.body, code, bad, tt.code, tt.bad)
		}
	}
}

// TestCheckShards: every goroutine's shard is one of the counters'.
func TestCheckShards(t *testing.T) {
	s := newCounters()
	if n := len(s.shards); n < 8 || n&(n-1) != 0 {
		t.Fatalf("%d shards", n)
	}
	seen := map[*checkShard]bool{}
	done := make(chan *checkShard)
	for range 64 {
		go func() { done <- s.shard() }()
	}
	for range 64 {
		seen[<-done] = true
	}
	for sh := range seen {
		ok := false
		for i := range s.shards {
			ok = ok || sh == &s.shards[i]
		}
		if !ok {
			t.Fatal("a shard outside the counters")
		}
	}
	t.Logf("64 goroutines on %d of %d shards", len(seen), len(s.shards))
	if len(seen) < 2 {
		t.Errorf("64 goroutines share %d shard", len(seen))
	}
}

// BenchmarkCheckCounter is what counting costs a check: one add to the
// calling goroutine's shard, alone and from 64 goroutines at once (where
// one shared counter would bounce its cache line between the cores).
func BenchmarkCheckCounter(b *testing.B) {
	s := newCounters()
	b.Run("1-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.cacheHit()
		}
	})
	b.Run("64-goroutines", func(b *testing.B) {
		b.SetParallelism(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.cacheHit()
			}
		})
	})
	var one atomic.Uint64
	b.Run("64-goroutines-one-shared-counter", func(b *testing.B) {
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one.Add(1)
			}
		})
	})
}
