package access

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestUsable(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		u    User
		want error
	}{
		{"fresh", User{Name: "a", Reset: ResetNever}, nil},
		{"revoked", User{Name: "a", Revoked: true, ExpiresAt: now.Add(-time.Hour)}, ErrRevoked},
		{"expired", User{Name: "a", ExpiresAt: now}, ErrExpired},
		{"not yet expired", User{Name: "a", ExpiresAt: now.Add(time.Second)}, nil},
		{"quota reached", User{Name: "a", Quota: 100, BytesUp: 40, BytesDown: 60}, ErrQuotaExceeded},
		{"quota left", User{Name: "a", Quota: 100, BytesUp: 40, BytesDown: 59}, nil},
		{"unlimited", User{Name: "a", BytesUp: math.MaxInt64, BytesDown: math.MaxInt64}, nil},
		{"saturating sum", User{Name: "a", Quota: math.MaxInt64, BytesUp: math.MaxInt64, BytesDown: 1}, ErrQuotaExceeded},
		{"quota of an ended period", User{Name: "a", Quota: 100, BytesDown: 500, Reset: ResetWeekly,
			PeriodStart: now.Add(-8 * 24 * time.Hour)}, nil},
		{"quota of the current period", User{Name: "a", Quota: 100, BytesDown: 500, Reset: ResetWeekly,
			PeriodStart: now.Add(-6 * 24 * time.Hour)}, ErrQuotaExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.u.Usable(now)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Usable(%s) = %v, want %v", now, err, tc.want)
			}
		})
	}
}

func TestRemaining(t *testing.T) {
	now := time.Now()
	u := User{Quota: 1000, BytesUp: 300, BytesDown: 200}
	if n, ok := u.Remaining(now); n != 500 || !ok {
		t.Errorf("Remaining = %d, %v, want 500, true", n, ok)
	}
	u.BytesDown = 5000
	if n, ok := u.Remaining(now); n != 0 || !ok {
		t.Errorf("Remaining over quota = %d, %v, want 0, true", n, ok)
	}
	if _, ok := (&User{}).Remaining(now); ok {
		t.Errorf("Remaining(unlimited) ok = true, want false")
	}
}

func TestCurrentPeriodStart(t *testing.T) {
	d := func(y int, m time.Month, day, h int) time.Time { return time.Date(y, m, day, h, 0, 0, 0, time.UTC) }
	tests := []struct {
		reset      string
		start, now time.Time
		want       time.Time
		rolled     bool
	}{
		{ResetNever, d(2020, 1, 1, 0), d(2026, 1, 1, 0), d(2020, 1, 1, 0), false},
		{ResetWeekly, d(2026, 11, 1, 9), d(2026, 11, 8, 8), d(2026, 11, 1, 9), false},
		{ResetWeekly, d(2026, 11, 1, 9), d(2026, 11, 8, 9), d(2026, 11, 8, 9), true},
		{ResetWeekly, d(2026, 11, 1, 9), d(2026, 11, 30, 0), d(2026, 11, 29, 9), true},
		{ResetMonthly, d(2026, 1, 15, 9), d(2026, 2, 15, 8), d(2026, 1, 15, 9), false},
		{ResetMonthly, d(2026, 1, 15, 9), d(2026, 2, 15, 9), d(2026, 2, 15, 9), true},
		{ResetMonthly, d(2026, 1, 15, 9), d(2026, 6, 1, 0), d(2026, 5, 15, 9), true},
		{ResetMonthly, d(2026, 1, 31, 0), d(2026, 2, 28, 0), d(2026, 2, 28, 0), true},
		{ResetMonthly, d(2026, 1, 31, 0), d(2026, 2, 27, 23), d(2026, 1, 31, 0), false},
		{ResetMonthly, d(2024, 1, 31, 0), d(2024, 2, 29, 1), d(2024, 2, 29, 0), true},
		{ResetMonthly, d(2026, 1, 31, 0), d(2026, 3, 30, 0), d(2026, 2, 28, 0), true},
		{ResetMonthly, d(2026, 1, 31, 0), d(2026, 3, 31, 0), d(2026, 3, 31, 0), true},
		{ResetMonthly, d(2026, 12, 10, 0), d(2027, 1, 10, 0), d(2027, 1, 10, 0), true},
		{ResetMonthly, d(2026, 12, 10, 0), d(2026, 12, 1, 0), d(2026, 12, 10, 0), false}, // clock behind
		{"bogus", d(2026, 1, 1, 0), d(2027, 1, 1, 0), d(2026, 1, 1, 0), false},
	}
	for _, tc := range tests {
		got, rolled := CurrentPeriodStart(tc.reset, tc.start, tc.now)
		if !got.Equal(tc.want) || rolled != tc.rolled {
			t.Errorf("CurrentPeriodStart(%s, %s, %s) = %s, %v, want %s, %v",
				tc.reset, tc.start, tc.now, got, rolled, tc.want, tc.rolled)
		}
	}
}
