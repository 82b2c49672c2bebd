package mpauthx

// TEMPORARY: stands in for the identity work landing on main (resolve,
// setPhone, user, User); removed at the merge.

import "context"

func (s *store) resolve(ctx context.Context, openID, unionID string) (string, error) {
	id := openID
	if unionID != "" {
		id = unionID
	}
	return id, s.ensure(ctx, id)
}

func (s *store) setPhone(ctx context.Context, userID, phone string) error { return nil }
