package mpauthx

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeProfile(t *testing.T) {
	han := strings.Repeat("中", 100) // 300 bytes; byte 256 falls inside a rune
	tests := []struct {
		name string
		in   UserInfo
		want profile
	}{
		{"as it is", UserInfo{NickName: "Band", City: "Guangzhou", Country: "CN", Province: "Guangdong", Language: "zh_CN", Gender: 1},
			profile{nickName: "Band", city: "Guangzhou", country: "CN", province: "Guangdong", language: "zh_CN", gender: 1}},
		{"NUL removed", UserInfo{NickName: "\x00a\x00b\x00", City: "\x00"}, profile{nickName: "ab"}},
		{"invalid UTF-8 removed", UserInfo{NickName: "a\xffb\xc3", Country: "\xed\xa0\x80C"}, profile{nickName: "ab", country: "C"}},
		{"other controls kept", UserInfo{NickName: "a\tb\x01"}, profile{nickName: "a\tb\x01"}},
		{"cut on a rune boundary", UserInfo{Province: han, Language: strings.Repeat("x", 300)},
			profile{province: han[:255], language: strings.Repeat("x", maxProfileFieldLen)}},
		{"gender 0", UserInfo{Gender: 0}, profile{}},
		{"gender 2", UserInfo{Gender: 2}, profile{gender: 2}},
		{"gender 3", UserInfo{Gender: 3}, profile{}},
		{"gender -1", UserInfo{Gender: -1}, profile{}},
		{"gender 2^31", UserInfo{Gender: 1 << 31}, profile{}},
		{"gender -2^31-1", UserInfo{Gender: -1<<31 - 1}, profile{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := normalizeProfile(&tt.in)
			if got != tt.want {
				t.Errorf("normalizeProfile = %#v, want %#v", got, tt.want)
			}
			for _, s := range []string{got.city, got.country, got.language, got.nickName, got.province} {
				if len(s) > maxProfileFieldLen || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
					t.Errorf("field %q: %d bytes, valid UTF-8 %v, NUL %v", s, len(s), utf8.ValidString(s), strings.ContainsRune(s, 0))
				}
			}
		})
	}
}
