package mpauthx

import "context"

// User is a registered user, as the user table holds it.
//
// One WeChat user has one user ID, whichever flow they log in with
// (Authorize, AuthorizeCode, AuthorizePhone) and in whichever order: the
// table records the user's openid and unionid, and the row a login finds
// keeps its ID. A new user's ID is the unionid when WeChat gives one at
// that first login, else the openid.
//
// One case splits a user, since no login can tell: a row of the Node.js
// original whose ID is the unionid records no openid, so if that user's
// first login through mpauthx brings no unionid (code2session gave none
// and, for Authorize, neither did the decrypted profile), it adds a row
// whose ID is the openid, and every later login finds that one. The old
// row and what the application keeps under its ID stay behind. See
// docs/operations.md ("SQL") for how to avoid it.
type User struct {
	ID      string `json:"id"`                // the token's user ID (see ExtractOpenID)
	OpenID  string `json:"openId"`            // this mini program's openid; "" for a row no login has touched since New added the column
	UnionID string `json:"unionId,omitempty"` // "" when unknown
	Phone   string `json:"phone,omitempty"`   // the PurePhoneNumber of the last phone-number login, "" when unknown

	// The profile of the last Authorize (WeChat no longer hands out real
	// profiles: these are empty or placeholders for most users).
	NickName string `json:"nickName"`
	City     string `json:"city"`
	Province string `json:"province"`
	Country  string `json:"country"`
	Language string `json:"language"`
	Gender   int    `json:"gender"` // 0 unknown, 1 male, 2 female

	// Identities lists every app the user has logged in through, one
	// Identity per (Platform, AppID, OpenID). The slice makes User not
	// comparable with ==.
	Identities []Identity `json:"identities,omitempty"`
}

// User returns the stored user with the exact ID userID: StatusUserNotExist
// when there is none, StatusRequiredParamsMissing when userID is empty or
// could not be a user ID.
func (c *Client) User(ctx context.Context, userID string) (User, error) {
	if err := c.checkOpen(); err != nil {
		return User{}, err
	}
	if err := checkUserID(userID); err != nil {
		return User{}, err
	}
	u, found, err := c.store.user(ctx, userID)
	if err != nil {
		err = c.storageError(ctx, "reading the user failed", err)
		c.logFailure(ctx, err)
		return User{}, err
	}
	if !found {
		return User{}, newError(StatusUserNotExist, "user does not exist", nil)
	}
	return u, nil
}

// checkUserID returns a StatusRequiredParamsMissing error unless userID
// could be a user ID.
func checkUserID(userID string) error {
	if userID == "" {
		return newError(StatusRequiredParamsMissing, "userID is required", nil)
	}
	if !validUserID(userID) {
		return newError(StatusRequiredParamsMissing, "userID is invalid: longer than 256 bytes, not printable UTF-8, or contains '|'", nil)
	}
	return nil
}
