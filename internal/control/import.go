package control

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/burrow-vpn/burrow/internal/access"
)

// ImportUsers adds users as they are — with new IDs, but their UUIDs,
// subscription tokens, quotas, expiry, notes, revocation, counters and
// periods kept, so their links and subscriptions keep working — in one
// transaction that logs a ChangeUser for each. It is how a single server's
// users move into a fleet without being re-invited. A name, UUID or token
// already present fails the whole import with access.ErrExists.
func (s *SQLStore) ImportUsers(ctx context.Context, users []*access.User) error {
	for _, u := range users {
		r := u.Reset
		if err := access.ValidateName(u.Name); err != nil {
			return wrap("import users", err)
		}
		if u.Quota < 0 || u.BytesUp < 0 || u.BytesDown < 0 {
			return wrap("import users", invalid("user "+u.Name, "negative quota or counter"))
		}
		if _, err := access.ParseReset(r); err != nil {
			return wrap("import users", err)
		}
		if err := access.ValidateNote(u.Note); err != nil {
			return wrap("import users", err)
		}
		if len(u.SubToken) != 43 {
			return wrap("import users", invalid("user "+u.Name, "subscription token is not 43 characters"))
		}
	}
	if len(users) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var last int64
		if err := s.row(ctx, tx, `UPDATE change_head SET version = version + ? WHERE id = 1 RETURNING version`,
			len(users)).Scan(&last); err != nil {
			return err
		}
		first := last - int64(len(users)) + 1
		ins, err := tx.PrepareContext(ctx, s.d.bind(`INSERT INTO users
			(name, name_key, uuid, sub_token, created_at, quota, expires_at, reset, note, revoked,
			 bytes_up, bytes_down, last_seen_day, period_start)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`))
		if err != nil {
			return err
		}
		defer ins.Close()
		for i, u := range users {
			reset, _ := access.ParseReset(u.Reset)
			var id, revoked int64
			if u.Revoked {
				revoked = 1
			}
			err := ins.QueryRowContext(ctx, u.Name, access.NameKey(u.Name), access.FormatUUID(u.UUID), u.SubToken,
				toUnix(u.CreatedAt), u.Quota, toUnix(u.ExpiresAt), reset, u.Note, revoked,
				u.BytesUp, u.BytesDown, u.LastSeenDay, toUnix(u.PeriodStart)).Scan(&id)
			if err != nil {
				return fmt.Errorf("user %q: %w", u.Name, err)
			}
			c := *u
			c.ID, c.Reset = id, reset
			if err := s.logChange(ctx, tx, Change{Version: first + int64(i), Kind: ChangeUser, User: &c}); err != nil {
				return err
			}
		}
		return s.notifyChange(ctx, tx, last) // one wake-up for the whole import
	})
	if err != nil {
		return wrap("import users", err)
	}
	s.wake.notify()
	return nil
}
