package mpauthx

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// ctxKey is the type of the context key under which the Middleware stores
// the user ID.
type ctxKey struct{}

// OpenIDFromContext returns the user ID the Middleware found in the
// request's token (the unionId when WeChat gave one, else the openId).
func OpenIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(ctxKey{}).(string)
	return id, ok
}

// Middleware lets through requests that carry a live token in an
// "Authorization: Bearer <token>" header (the scheme in any case), with the
// token's user ID in the request context (see OpenIDFromContext). A missing
// or invalid token gets 401 and the JSON of ErrorResult for
// StatusInvalidAccessToken; a Redis failure gets 503 and the error's Result.
// Nothing of the token is logged.
func (c *Client) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			unauthorized(w)
			return
		}
		valid, err := c.IsTokenValid(r.Context(), token)
		if err != nil {
			writeResult(w, http.StatusServiceUnavailable, ErrorResult(err))
			return
		}
		if !valid {
			unauthorized(w)
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, c.ExtractOpenID(token))
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
	w.Header().Set("WWW-Authenticate", `Bearer realm="mpauthx"`)
	writeResult(w, http.StatusUnauthorized, ErrorResult(newError(StatusInvalidAccessToken, "invalid access token", nil)))
}

// writeResult sends res as JSON with the HTTP status.
func writeResult(w http.ResponseWriter, status int, res Result) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}
