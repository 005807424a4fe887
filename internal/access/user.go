package access

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Sentinel errors callers branch on. Store methods wrap them with context;
// test with errors.Is.
var (
	ErrNotFound      = errors.New("user not found")
	ErrExists        = errors.New("user already exists")
	ErrRevoked       = errors.New("access revoked")
	ErrExpired       = errors.New("access expired")
	ErrQuotaExceeded = errors.New("traffic quota exceeded")
)

// User is one access key holder. Its UUID is the VLESS credential and its
// SubToken names its subscription URL; neither is ever logged, and User has
// no String method that would print them.
type User struct {
	ID          int64
	Name        string    // unique case-insensitively; see ValidateName
	UUID        [16]byte  // random (version 4); the VLESS user id
	CreatedAt   time.Time // UTC, whole seconds
	Quota       int64     // bytes per period, up plus down; 0 = unlimited
	ExpiresAt   time.Time // UTC, whole seconds; zero = never
	Reset       string    // ResetNever, ResetWeekly or ResetMonthly
	Note        string    // operator's free text
	Revoked     bool
	BytesUp     int64  // client to server, this period
	BytesDown   int64  // server to client, this period
	LastSeenDay string // "YYYY-MM-DD" (UTC) of the last traffic, or ""
	SubToken    string // 32 random bytes, base64url without padding
	PeriodStart time.Time
}

// Traffic is a byte count in each direction.
type Traffic struct {
	Up, Down int64
}

// Used returns the bytes counted against the quota at now: up plus down
// (saturating), or 0 if the current period has already ended and the
// counters are merely waiting to be reset.
func (u *User) Used(now time.Time) int64 {
	if _, rolled := u.RolledPeriod(now); rolled {
		return 0
	}
	return addSat(u.BytesUp, u.BytesDown)
}

// Remaining returns how many bytes the user may still move this period, and
// false if the quota is unlimited.
func (u *User) Remaining(now time.Time) (int64, bool) {
	if u.Quota <= 0 {
		return 0, false
	}
	return max(u.Quota-u.Used(now), 0), true
}

// Usable returns nil if the user may connect at now, or an error wrapping
// ErrRevoked, ErrExpired or ErrQuotaExceeded, checked in that order.
func (u *User) Usable(now time.Time) error {
	switch {
	case u.Revoked:
		return fmt.Errorf("access: user %q: %w", u.Name, ErrRevoked)
	case !u.ExpiresAt.IsZero() && !now.Before(u.ExpiresAt):
		return fmt.Errorf("access: user %q since %s: %w", u.Name, u.ExpiresAt.UTC().Format(time.RFC3339), ErrExpired)
	case u.Quota > 0 && u.Used(now) >= u.Quota:
		return fmt.Errorf("access: user %q used %s of %s: %w", u.Name, FormatSize(u.Used(now)), FormatSize(u.Quota), ErrQuotaExceeded)
	}
	return nil
}

// RolledPeriod reports whether the user's traffic period has ended at now
// and, if so, when the current period began. The caller then resets the
// counters with Store.ResetTraffic(ctx, id, start).
func (u *User) RolledPeriod(now time.Time) (start time.Time, rolled bool) {
	return CurrentPeriodStart(u.Reset, u.PeriodStart, now)
}

// CurrentPeriodStart returns the start of the period that contains now, for
// periods of kind reset of which one began at start, and whether that differs
// from start (that is, at least one period has ended). Weekly periods are 7×24
// hours. Monthly periods begin on start's day of the month at start's time of
// day, on the month's last day when it is shorter (a period begun on the 31st
// is followed by one on 30 April, then 30 May: the clamp is not undone).
// For ResetNever, or now before the first period's end, it returns start, false.
func CurrentPeriodStart(reset string, start, now time.Time) (time.Time, bool) {
	start, now = start.UTC(), now.UTC()
	if !now.After(start) {
		return start, false
	}
	var cur time.Time
	switch reset {
	case ResetWeekly:
		const week = 7 * 24 * time.Hour
		d := now.Sub(start) // saturates after 292 years; fine for stored values
		cur = start.Add(d / week * week)
	case ResetMonthly:
		months := (now.Year()-start.Year())*12 + int(now.Month()-start.Month())
		cur = addMonthsClamped(start, months)
		for cur.After(now) && months > 0 {
			months--
			cur = addMonthsClamped(start, months)
		}
	default:
		return start, false
	}
	return cur, cur.After(start)
}

// addMonthsClamped adds k calendar months to t, keeping its day of the month
// unless the target month is shorter, in which case its last day.
func addMonthsClamped(t time.Time, k int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(k), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	last := time.Date(first.Year(), first.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}

func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
