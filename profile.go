package mpauthx

import (
	"strings"
	"unicode/utf8"
)

// maxProfileFieldLen caps each text field of a stored profile, in bytes.
// WeChat's own fields are far shorter (a nickname has at most 64
// characters); the cap only bounds what a hostile payload can store.
const maxProfileFieldLen = 256

// profile is a user's profile as the user table stores it.
type profile struct {
	city, country, language, nickName, province string
	gender                                      int
}

// normalizeProfile turns the decrypted profile u into what both SQLite and
// PostgreSQL accept, so that a profile never fails a login on one database
// and not on the other: each text field is made valid UTF-8, loses its NUL
// characters (PostgreSQL's text cannot hold them) and is cut to
// maxProfileFieldLen bytes on a character boundary; a gender other than
// WeChat's 0 (unknown), 1 (male) and 2 (female) becomes 0 (so it always
// fits PostgreSQL's 32-bit integer column).
func normalizeProfile(u *UserInfo) profile {
	p := profile{
		city:     profileText(u.City),
		country:  profileText(u.Country),
		language: profileText(u.Language),
		nickName: profileText(u.NickName),
		province: profileText(u.Province),
		gender:   u.Gender,
	}
	if p.gender < 0 || p.gender > 2 {
		p.gender = 0
	}
	return p
}

// profileText is s as valid UTF-8 without NUL, at most maxProfileFieldLen
// bytes long.
func profileText(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	if len(s) <= maxProfileFieldLen {
		return s
	}
	n := maxProfileFieldLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
