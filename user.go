package mpauthx

import "context"

// User is a registered user, as the user table holds it.
//
// One WeChat user has one user ID, whichever flow they log in with
// (Authorize, AuthorizeCode, AuthorizePhone) and in whichever order: the
// table records the user's openid and unionid, and a user's ID never
// changes once their row exists. A new user's ID is the unionid when WeChat
// gives one at that first login, else the openid.
type User struct {
	ID      string // the token's user ID (see ExtractOpenID)
	OpenID  string // this mini program's openid; "" for a row no login has touched since New added the column
	UnionID string // "" when unknown
	Phone   string // the PurePhoneNumber of the last phone-number login, "" when unknown

	// The profile of the last Authorize (WeChat no longer hands out real
	// profiles: these are empty or placeholders for most users).
	NickName, City, Province, Country, Language string
	Gender                                      int

	// Identities lists every app the user has logged in through, one
	// Identity per (Platform, AppID, OpenID). The slice makes User not
	// comparable with ==.
	Identities []Identity
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
	u, found, err := c.store.user(ctx, userID, c.platform, c.appID)
	if err != nil {
		err = c.storageError(ctx, "reading the user failed", err)
		c.logFailure(ctx, err)
		return User{}, err
	}
	if !found {
		return User{}, errUserNotExist()
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
