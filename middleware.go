package mpauthx

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// ctxKey is the type of the context key under which the Middleware stores
// the caller it authenticated.
type ctxKey struct{}

// caller is what the Middleware learnt of a request's caller.
type caller struct {
	userID string
	token  string
}

// UserIDFromContext returns the user ID the Middleware found in the
// request's token (the user's ID in the user table: for a WeChat user the
// unionId when WeChat gave one, else the openId), and false outside the
// Middleware.
func UserIDFromContext(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(ctxKey{}).(*caller)
	if !ok {
		return "", false
	}
	return c.userID, true
}

// OpenIDFromContext is UserIDFromContext, under the Node.js original's
// name.
func OpenIDFromContext(ctx context.Context) (string, bool) {
	return UserIDFromContext(ctx)
}

// TokenFromContext returns the token the Middleware accepted for the
// request, and false outside the Middleware: pass it to RevokeToken to
// log the caller out. It is a secret: never log it.
func TokenFromContext(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(ctxKey{}).(*caller)
	if !ok {
		return "", false
	}
	return c.token, true
}

// Middleware lets through requests that carry a live token in an
// "Authorization: Bearer <token>" header (the scheme in any case), with the
// token's user ID and the token itself in the request context (see
// UserIDFromContext and TokenFromContext). A missing or invalid token gets
// 401 and the JSON of ErrorResult for StatusInvalidAccessToken; a failed
// check gets the error's Result with HTTPStatus's status (503 for a Redis
// failure or a closed Client). Nothing of the token is logged.
func (c *Client) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			unauthorized(w)
			return
		}
		valid, err := c.IsTokenValid(r.Context(), token)
		if err != nil {
			writeResult(w, HTTPStatus(err), ErrorResult(err))
			return
		}
		if !valid {
			unauthorized(w)
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, &caller{userID: c.ExtractOpenID(token), token: token})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// unauthorized replies 401 with the Result of StatusInvalidAccessToken.
func unauthorized(w http.ResponseWriter) {
	err := newError(StatusInvalidAccessToken, "invalid access token", nil)
	w.Header().Set("WWW-Authenticate", `Bearer realm="mpauthx"`)
	writeResult(w, HTTPStatus(err), ErrorResult(err))
}

// writeResult sends res as JSON with the HTTP status.
func writeResult(w http.ResponseWriter, status int, res Result) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}
