package mpauthx

import (
	"context"
	"crypto/subtle"
)

// Result is the reply of the Node.js original, ready to be sent as JSON to
// the mini program: on success StatusSuccess, "OK" and the token in
// Response; on failure the error's code and message and no token.
type Result struct {
	StatusCode    StatusCode `json:"status_code"`    // StatusSuccess, or the error's code
	StatusMessage string     `json:"status_message"` // "OK", or the error's Message
	Response      string     `json:"response"`       // the token; "" on failure
}

// success returns the Result of a call that produced token.
func success(token string) Result {
	return Result{StatusCode: StatusSuccess, StatusMessage: StatusSuccess.Message(), Response: token}
}

// Authorize logs a user in with the code of wx.login and the encryptedData
// and iv of the user's profile: it exchanges the code with WeChat's
// code2session, decrypts and checks the profile, stores it in the user table
// and returns the user's token. A user who already holds a live token for
// this Sku gets that token back, its TTL unchanged, so that the user's
// devices share one session; concurrent logins of one user all get the
// same token.
//
// The token's user ID is the user's ID in the user table (see User): for
// a new user the unionId when WeChat gives one, in code2session's reply
// or in encryptedData, else the openId. On failure the Result is ErrorResult(err), ready to be sent.
func (c *Client) Authorize(ctx context.Context, code, encryptedData, iv string) (_ Result, err error) {
	defer c.trackLogin(&ctx, "Authorize")(&err)
	if err := c.checkOpen(); err != nil {
		return c.fail(ctx, err)
	}
	if err := c.supports(callAuthorize); err != nil {
		return c.fail(ctx, err)
	}
	if err := required("code", code, "encryptedData", encryptedData, "iv", iv); err != nil {
		return c.fail(ctx, err)
	}
	s, err := c.exchange(ctx, code)
	if err != nil {
		return c.fail(ctx, err)
	}
	u, err := DecryptUserInfo(c.appID, s.sessionKey, encryptedData, iv)
	if err != nil {
		return c.fail(ctx, err)
	}
	if subtle.ConstantTimeCompare([]byte(u.OpenID), []byte(s.openID)) != 1 {
		return c.fail(ctx, newError(StatusOpenIDMismatch, "encryptedData belongs to another user", nil))
	}
	unionID := s.unionID
	if unionID == "" && u.UnionID != "" {
		if !validUserID(u.UnionID) {
			return c.fail(ctx, newError(StatusDecryptError, "encryptedData has an unusable unionId", nil))
		}
		unionID = u.UnionID
	}
	userID, err := c.store.login(ctx, c.identity(s.openID, unionID), u, "")
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "saving the user failed", err))
	}
	return c.issue(ctx, userID, s)
}

// AuthorizeCode logs a user in with the code of wx.login alone, the usual
// login now that WeChat no longer hands out real profiles: it exchanges the
// code with code2session, adds the user to the user table if missing (an
// existing profile is left alone) and returns the user's token, shared as in
// Authorize. The user ID is the user's ID in the user table (see User): for
// a new user code2session's unionid when present, else its openid. On failure the Result is ErrorResult(err), ready to be sent.
func (c *Client) AuthorizeCode(ctx context.Context, code string) (_ Result, err error) {
	defer c.trackLogin(&ctx, "AuthorizeCode")(&err)
	if err := c.checkOpen(); err != nil {
		return c.fail(ctx, err)
	}
	if err := required("code", code); err != nil {
		return c.fail(ctx, err)
	}
	s, err := c.exchange(ctx, code)
	if err != nil {
		return c.fail(ctx, err)
	}
	userID, err := c.store.login(ctx, c.identity(s.openID, s.unionID), nil, "")
	if err != nil {
		return c.fail(ctx, c.storageError(ctx, "saving the user failed", err))
	}
	return c.issue(ctx, userID, s)
}

// required returns a StatusRequiredParamsMissing error naming the first
// empty value of the name, value pairs.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return newError(StatusRequiredParamsMissing, pairs[i]+" is required", nil)
		}
	}
	return nil
}
