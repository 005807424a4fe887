package access

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Store keeps users and their traffic counters. Implementations are safe for
// concurrent use, also by several processes sharing one database (the CLI
// and a running server). Methods that take an id return an error wrapping
// ErrNotFound when there is no such user; invalid input wraps ErrInvalid.
type Store interface {
	// CreateUser adds a user with a fresh random UUID and subscription token.
	// A name equal to an existing one case-insensitively wraps ErrExists.
	CreateUser(ctx context.Context, nu NewUser) (*User, error)
	UserByName(ctx context.Context, name string) (*User, error) // case-insensitive
	UserByUUID(ctx context.Context, uuid [16]byte) (*User, error)
	UserBySubToken(ctx context.Context, token string) (*User, error)
	ListUsers(ctx context.Context) ([]*User, error) // ordered by ID
	// UpdateUser changes the fields of upd that are not nil, in one
	// transaction. Changing Reset starts a new period now.
	UpdateUser(ctx context.Context, id int64, upd UserUpdate) (*User, error)
	// RevokeUser marks the user revoked; it stays listed with its counters.
	RevokeUser(ctx context.Context, id int64) error
	// EnableUser lifts a revocation: the user's link works again (unless
	// the user is also expired or over quota). A user not revoked is left
	// as is.
	EnableUser(ctx context.Context, id int64) error
	// RotateUUID gives the user a new random UUID, so links holding the old
	// one stop working. The subscription token is kept, so a subscribed
	// client picks up the new link by itself.
	RotateUUID(ctx context.Context, id int64) (*User, error)
	// ResetTraffic zeroes both counters and starts a period at periodStart,
	// unless the user's period already starts at or after periodStart (the
	// reset already happened, perhaps in another process): then it does
	// nothing, so concurrent period rollovers never wipe a period twice.
	ResetTraffic(ctx context.Context, id int64, periodStart time.Time) error
	// AddTraffic adds each delta to its user's counters (saturating at
	// math.MaxInt64) and sets the user's LastSeenDay to day ("YYYY-MM-DD")
	// unless it already holds a later day, all in one transaction. Unknown
	// ids are skipped; negative deltas are refused.
	AddTraffic(ctx context.Context, deltas map[int64]Traffic, day string) error
	Close() error
}

// NewUser holds what the operator chooses for a new user.
type NewUser struct {
	Name      string    // see ValidateName
	Quota     int64     // bytes per period; 0 = unlimited; never negative
	ExpiresAt time.Time // zero = never; otherwise must be in the future
	Reset     string    // ResetNever (or ""), ResetWeekly, ResetMonthly
	Note      string    // see ValidateNote
}

// UserUpdate lists the fields UpdateUser changes; nil fields stay as they are.
type UserUpdate struct {
	Quota     *int64
	ExpiresAt *time.Time // pointer to the zero time = never expires
	Reset     *string
	Note      *string
}

func (nu *NewUser) validate(now time.Time) error {
	if err := ValidateName(nu.Name); err != nil {
		return err
	}
	return validateFields(nu.Quota, nu.ExpiresAt, &nu.Reset, nu.Note, now)
}

func validateFields(quota int64, expires time.Time, reset *string, note string, now time.Time) error {
	if quota < 0 {
		return invalid("quota", "%d is negative", quota)
	}
	if !expires.IsZero() && !expires.After(now) {
		return invalid("expiry", "%s is in the past", expires.UTC().Format(time.RFC3339))
	}
	r, err := ParseReset(*reset)
	if err != nil {
		return err
	}
	*reset = r
	return ValidateNote(note)
}

// NewUUID returns a random version-4 UUID.
func NewUUID() [16]byte {
	var u [16]byte
	rand.Read(u[:]) // never fails (crypto/rand panics rather than return an error)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// NewSubToken returns 32 random bytes as base64url without padding (43 characters).
func NewSubToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FormatUUID returns u in the canonical 8-4-4-4-12 lowercase hex form.
func FormatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// ParseUUID parses the canonical 8-4-4-4-12 hex form, in either case.
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, invalid("uuid", "want the 8-4-4-4-12 hex form (36 characters)")
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return [16]byte{}, invalid("uuid", "not hexadecimal")
	}
	return u, nil
}

// ValidateDay reports whether day is a "YYYY-MM-DD" calendar date.
func ValidateDay(day string) error {
	if t, err := time.Parse(time.DateOnly, day); err != nil || t.Format(time.DateOnly) != day {
		return invalid("day", "%.20q is not a YYYY-MM-DD date", day)
	}
	return nil
}

func notFound(what string) error {
	return fmt.Errorf("access: %s: %w", what, ErrNotFound)
}

// ResetDuePeriods resets the counters of every user whose weekly or monthly
// period has ended at now, starting their current period, and returns how
// many it reset. The server calls it periodically; running it from several
// processes at once is safe (see Store.ResetTraffic).
func ResetDuePeriods(ctx context.Context, st Store, now time.Time) (int, error) {
	users, err := st.ListUsers(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range users {
		start, rolled := u.RolledPeriod(now)
		if !rolled {
			continue
		}
		if err := st.ResetTraffic(ctx, u.ID, start); err != nil && !errors.Is(err, ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
