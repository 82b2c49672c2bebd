package mpauthx

import "context"

// User is a registered user, as the user table holds it.
//
// One person has one user ID, whichever flow they log in with
// (Authorize, AuthorizeCode, AuthorizePhone), in whichever order, and
// through whichever app sharing the database: a login finds its user by
// the app's identity, by the unionid of its platform family, or by the
// rows of earlier versions, and the row a login finds keeps its ID.
// Identifiers of two different users are refused (StatusAccountConflict),
// never merged. A new WeChat mini-program user's ID is the unionid when
// WeChat gives one at that first login, else the openid (as in the
// Node.js original); another platform's is "<platform>:<openid>" (such as
// "douyin:..."), which no other platform's can equal. docs/identities.md
// has the rules.
//
// One case splits a user, since no login can tell: a row of the Node.js
// original whose ID is the unionid records no openid, so if that user's
// first login through mpauthx brings no unionid (code2session gave none
// and, for Authorize, neither did the decrypted profile), it adds a user
// whose ID is the openid, and every later login finds that one. The old
// row and what the application keeps under its ID stay behind. See
// docs/operations.md ("SQL") for how to avoid it.
type User struct {
	ID      string `json:"id"`                // the token's user ID (see ExtractOpenID)
	OpenID  string `json:"openId"`            // the openid of the reading Client's app; "" when the user never logged in through it
	UnionID string `json:"unionId,omitempty"` // the unionid in the reading Client's platform family; "" when unknown
	Phone   string `json:"phone,omitempty"`   // the number of the last phone login (a platform verified it), "" when unknown

	// The profile of the last Authorize (WeChat no longer hands out real
	// profiles: these are empty or placeholders for most users).
	NickName string `json:"nickName"`
	City     string `json:"city"`
	Province string `json:"province"`
	Country  string `json:"country"`
	Language string `json:"language"`
	Gender   int    `json:"gender"` // 0 unknown, 1 male, 2 female

	// Identities lists every app the user has logged in through (or was
	// linked to with Link), one Identity per (Platform, AppID, OpenID),
	// sorted by Platform, AppID and OpenID. A user of an earlier version
	// that has not logged in since has none yet; OpenID and UnionID then
	// come from the columns that version kept. The slice makes User not
	// comparable with ==.
	Identities []Identity `json:"identities,omitempty"`
}

// User returns the stored user with the exact ID userID, with its
// identities: StatusUserNotExist when there is none,
// StatusRequiredParamsMissing when userID is empty or could not be a user
// ID. OpenID and UnionID are those of this Client's app (see User).
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
