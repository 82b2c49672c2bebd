package mpauthx

import (
	"context"
	"errors"
	"testing"
)

func TestErrorText(t *testing.T) {
	http500 := newError(StatusHTTPError, "WeChat answered HTTP 500", nil)
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"message only", newError(StatusUserNotExist, "user does not exist", nil), "mpauthx: user does not exist (6010)"},
		{"no message", newError(StatusDecryptError, "", nil), "mpauthx: " + StatusDecryptError.Message() + " (6011)"},
		{"plain cause", newError(StatusDatabaseError, "storing the token failed", errors.New("dial tcp: refused")),
			"mpauthx: storing the token failed (6000): dial tcp: refused"},
		{"closed", newError(StatusUnknownError, "client is closed", ErrClosed), "mpauthx: client is closed (9999)"},
		{"nested *Error repeating the message", sessionError(http500),
			"mpauthx: " + StatusSessionKeyRequestError.Message() + ": WeChat answered HTTP 500 (6008, 6002)"},
		{"nested *Error with a cause of its own", newError(StatusSessionKeyRequestError, "x: reading failed",
			newError(StatusHTTPResponseError, "reading failed", context.Canceled)),
			"mpauthx: x: reading failed (6008, 6005): context canceled"},
		{"nested *Error with another message", newError(StatusSessionKeyRequestError, "outer", http500),
			"mpauthx: outer (6008): mpauthx: WeChat answered HTTP 500 (6002)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}
