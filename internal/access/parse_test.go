package access

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	good := []string{"anna", "Anna.B", "mom_phone-2", "Мама", "李雷", "José", "नमस्ते", "a", "Mom Phone",
		strings.Repeat("я", 64), "0day"}
	for _, name := range good {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	bad := []struct{ name, why string }{
		{"", "empty"},
		{strings.Repeat("a", 65), "65 characters"},
		{strings.Repeat("x", 5000), "5000 characters"},
		{"a\x00b", "control character"},
		{"line\nbreak", "control character"},
		{"tab\there", "control character"},
		{"esc\x1b[31m", "control character"},
		{"del\x7f", "control character"},
		{" anna", "start or end"},
		{"anna ", "start or end"},
		{"an  na", "two spaces"},
		{"-rf", "must start with a letter or digit"},
		{".hidden", "must start with a letter or digit"},
		{"a/b", "not allowed"},
		{"a;drop", "not allowed"},
		{"a'b", "not allowed"},
		{"emoji😀", "not allowed"},
		{"bad\xffutf8", "UTF-8"},
		{"zero\u200bwidth", "not allowed"},
		{"rtl\u202eoverride", "not allowed"},
	}
	for _, tc := range bad {
		err := ValidateName(tc.name)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ValidateName(%.40q) = %v, want ErrInvalid saying %q", tc.name, err, tc.why)
		}
	}
}

func TestNameKey(t *testing.T) {
	same := [][2]string{{"Anna", "aNNA"}, {"МАМА", "мама"}, {"ΣΊΣΥΦΟΣ", "σίσυφος"}, {"Straße", "STRAßE"}, {"K", "\u212a"}}
	for _, p := range same {
		if NameKey(p[0]) != NameKey(p[1]) {
			t.Errorf("NameKey(%q) = %q, NameKey(%q) = %q, want equal", p[0], NameKey(p[0]), p[1], NameKey(p[1]))
		}
	}
	if NameKey("anna") == NameKey("anne") {
		t.Errorf("NameKey(anna) == NameKey(anne)")
	}
}

func TestValidateNote(t *testing.T) {
	if err := ValidateNote("paid until March\tvia bank"); err != nil {
		t.Errorf("ValidateNote(ok) = %v, want nil", err)
	}
	for _, n := range []string{strings.Repeat("n", 1001), "a\nb", "\x00", "\xff"} {
		if err := ValidateNote(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateNote(%.20q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"1B", 1},
		{"50GB", 50e9},
		{"50 GB", 50e9},
		{"50gb", 50e9},
		{"1KB", 1000},
		{"1kB", 1000},
		{"1MB", 1e6},
		{"2TB", 2e12},
		{"1KiB", 1024},
		{"1MiB", 1 << 20},
		{"1GiB", 1 << 30},
		{"1TiB", 1 << 40},
		{"1.5GiB", 3 << 29},
		{"1.5KiB", 1536},
		{"0.5KB", 500},
		{"0.0001KB", 0},
		{"+7", 7},
		{" 10MB ", 10e6},
		{"9223372036854775807", math.MaxInt64},
		{"8388607TiB", 8388607 << 40},
		{"1.5PB", 15e14},
		{"7EiB", 7 << 60},
		{"9.22 EB", 922e16},
		{"9223372036854775.807KB", math.MaxInt64},
	}
	for _, tc := range good {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"   ", "empty"},
		{"-1GB", "negative"},
		{"-0", "negative"},
		{"GB", "does not start with a number"},
		{"abc", "does not start with a number"},
		{"10XB", "unknown unit"},
		{"10 G", "unknown unit"},
		{"1e9", "unknown unit"},
		{"1.2.3GB", "more than one decimal point"},
		{".5GB", "decimal point"},
		{"5.GB", "decimal point"},
		{"9223372036854775808", "too large"},
		{"99999999999999999999999", "too large"},
		{"8388608TiB", "too large"},
		{"8EiB", "too large"},
		{"9.23EB", "too large"},
		{"9223372036854775.808KB", "too large"},
		{"10GB\x00", "unknown unit"},
		{strings.Repeat("9", 5000), "too long"},
		{"0x10", "unknown unit"},
	}
	for _, tc := range bad {
		got, err := ParseSize(tc.in)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseSize(%.30q) = %d, %v, want ErrInvalid saying %q", tc.in, got, err, tc.why)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{999, "999 B"},
		{1000, "1 KB"},
		{1536, "1.53 KB"},
		{1500, "1.5 KB"},
		{50e9, "50 GB"},
		{1 << 30, "1.07 GB"},
		{math.MaxInt64, "9.22 EB"},
		{-5, "-5 B"},
	}
	for _, tc := range tests {
		if got := FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "50GB", "1.5GiB", "1024", "9223372036854775807", "7 tib", "-1", "1.2.3", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSize(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, want non-negative", s, n)
		}
		// FormatSize rounds down to 3 significant digits (units of 1000 up to EB),
		// so it parses back to at most n and within 1%.
		back, err := ParseSize(FormatSize(n))
		if err != nil || back > n || n-back > n/100+1 {
			t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d, %v, want ≤ n within 1%%", n, FormatSize(n), back, err)
		}
	})
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 30, 15, 500, time.UTC)
	good := []struct {
		in   string
		want time.Time
	}{
		{"30d", time.Date(2026, 12, 27, 10, 30, 15, 0, time.UTC)},
		{"12h", time.Date(2026, 11, 27, 22, 30, 15, 0, time.UTC)},
		{"2w", time.Date(2026, 12, 11, 10, 30, 15, 0, time.UTC)},
		{"2027-01-31", time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-11-27", time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}, // through today
		{"2027-01-31T18:00:00+03:00", time.Date(2027, 1, 31, 15, 0, 0, 0, time.UTC)},
		{"never", time.Time{}},
		{"NEVER", time.Time{}},
		{"36500d", now.Add(36500 * 24 * time.Hour).Truncate(time.Second)},
	}
	for _, tc := range good {
		got, err := ParseExpiry(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseExpiry(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"-5d", "negative"},
		{"0d", "zero"},
		{"2026-11-26", "in the past"},
		{"1999-01-01", "in the past"},
		{"2026-11-27T10:00:00Z", "in the past"},
		{"36501d", "100 years"},
		{"99999999999999999999d", "100 years"},
		{"9223372036854775807h", "100 years"},
		{"9999-12-31", "100 years"},
		{"2027-02-30", "not a span"},
		{"30m", "not a span"},
		{"30", "not a span"},
		{"d", "whole number"},
		{"1.5d", "whole number"},
		{"3 0d", "whole number"},
		{"tomorrow", "not a span"},
		{strings.Repeat("1", 5000) + "d", "too long"},
		{"30d\x00", "not a span"},
	}
	for _, tc := range bad {
		got, err := ParseExpiry(tc.in, now)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseExpiry(%.30q) = %v, %v, want ErrInvalid saying %q", tc.in, got, err, tc.why)
		}
	}
}

func TestParseReset(t *testing.T) {
	for in, want := range map[string]string{"": "never", "never": "never", "Weekly": "weekly", " monthly ": "monthly"} {
		if got, err := ParseReset(in); err != nil || got != want {
			t.Errorf("ParseReset(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"daily", "month", "yearly", strings.Repeat("x", 5000)} {
		if got, err := ParseReset(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReset(%.20q) = %q, %v, want ErrInvalid", in, got, err)
		}
	}
}

func TestUUID(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 100 {
		u := NewUUID()
		if u[6]>>4 != 4 || u[8]>>6 != 2 {
			t.Fatalf("NewUUID() = %x, want version 4, variant 10", u)
		}
		if seen[u] {
			t.Fatalf("NewUUID() repeated %x", u)
		}
		seen[u] = true
		back, err := ParseUUID(FormatUUID(u))
		if err != nil || back != u {
			t.Fatalf("ParseUUID(FormatUUID(%x)) = %x, %v", u, back, err)
		}
	}
	if s := FormatUUID([16]byte{0: 0xAB, 15: 0x01}); s != "ab000000-0000-0000-0000-000000000001" {
		t.Errorf("FormatUUID = %q", s)
	}
	for _, s := range []string{"", "ab000000000000000000000000000001", "zz000000-0000-0000-0000-000000000001", "ab000000-0000-0000-0000-0000000000011"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) = nil error, want error", s)
		}
	}
	if tok := NewSubToken(); len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Errorf("NewSubToken() = %q, want 43 base64url characters", tok)
	}
}

func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"30d", "12h", "2w", "2027-01-31", "2027-01-31T18:00:00+03:00", "never", "-1d", "99999999999999999999h"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 10, 30, 15, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseExpiry(s, now)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseExpiry(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if !got.IsZero() && (!got.After(now) || got.Sub(now) > MaxExpiry || got.Location() != time.UTC) {
			t.Fatalf("ParseExpiry(%q) = %v, want a UTC time in (now, now+MaxExpiry]", s, got)
		}
	})
}
