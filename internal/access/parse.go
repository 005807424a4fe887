package access

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error about a name, size, date, note or reset
// period that makes no sense, so an API can answer "bad request" with the
// message, which says why.
var ErrInvalid = errors.New("invalid")

// invalid builds an error that says what was wrong and wraps ErrInvalid.
func invalid(what, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", what, fmt.Sprintf(format, args...), ErrInvalid)
}

// MaxNameLen is the longest user name, in characters (runes).
const MaxNameLen = 64

// MaxNoteLen is the longest note, in bytes.
const MaxNoteLen = 1000

// ValidateName reports why name cannot be a user name, or nil.
//
// A name is 1..64 characters: letters (any script), digits, marks that follow
// them, '.', '_', '-', and single spaces inside. It starts with a letter or
// digit (so it never looks like a command-line flag) and is valid UTF-8.
// Uniqueness is case-insensitive; see NameKey.
func ValidateName(name string) error {
	if name == "" {
		return invalid("name", "empty")
	}
	if !utf8.ValidString(name) {
		return invalid("name", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		return invalid("name", "%d characters, at most %d allowed", n, MaxNameLen)
	}
	prevSpace := false
	for i, r := range name {
		switch {
		case unicode.IsControl(r) || r == utf8.RuneError:
			return invalid("name", "control character %U at byte %d", r, i)
		case r == ' ':
			if i == 0 || i == len(name)-1 {
				return invalid("name", "space at the start or end")
			}
			if prevSpace {
				return invalid("name", "two spaces in a row")
			}
		case i == 0 && !unicode.IsLetter(r) && !unicode.IsDigit(r):
			return invalid("name", "must start with a letter or digit, not %q", r)
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.M, r):
		case r == '.' || r == '_' || r == '-':
		default:
			return invalid("name", "character %q not allowed (letters, digits, '.', '_', '-' and inner spaces are)", r)
		}
		prevSpace = r == ' '
	}
	return nil
}

// NameKey returns the form of name used for case-insensitive uniqueness: each
// rune replaced by the smallest rune of its Unicode simple case-folding orbit,
// so "Anna", "ANNA" and "anna" (and "Ωμέγα", "ΩΜΈΓΑ") share one key.
// Unicode normalization (NFC) is not applied.
func NameKey(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

// ValidateNote reports why note cannot be stored, or nil: at most MaxNoteLen
// bytes of UTF-8 without control characters other than tab.
func ValidateNote(note string) error {
	if len(note) > MaxNoteLen {
		return invalid("note", "%d bytes, at most %d allowed", len(note), MaxNoteLen)
	}
	if !utf8.ValidString(note) {
		return invalid("note", "not valid UTF-8")
	}
	for i, r := range note {
		if unicode.IsControl(r) && r != '\t' {
			return invalid("note", "control character %U at byte %d", r, i)
		}
	}
	return nil
}

var sizeUnits = []struct {
	name string
	mult int64
}{
	{"B", 1},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15}, {"EB", 1e18},
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"PIB", 1 << 50}, {"EIB", 1 << 60},
}

// ParseSize parses a byte count such as "50GB", "1.5 GiB", "700MB" or "1024".
// KB, MB, GB, TB (and PB, EB) are powers of 1000; KiB, MiB, GiB, TiB (and
// PiB, EiB) powers of 1024;
// units are case-insensitive and a number without a unit is bytes. A decimal
// fraction is allowed and the result is rounded down to whole bytes. Negative
// numbers, exponents, results above math.MaxInt64 and anything else are
// refused with an error that says why.
func ParseSize(s string) (int64, error) {
	const what = "size"
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, invalid(what, "empty")
	}
	if len(in) > 64 {
		return 0, invalid(what, "%d characters is too long", len(in))
	}
	if in[0] == '-' {
		return 0, invalid(what, "%q is negative", s)
	}
	if in[0] == '+' {
		in = in[1:]
	}
	// Split the number from the unit.
	end := 0
	for end < len(in) && (in[end] >= '0' && in[end] <= '9' || in[end] == '.') {
		end++
	}
	num, unit := in[:end], strings.ToUpper(strings.TrimSpace(in[end:]))
	if num == "" {
		return 0, invalid(what, "%q does not start with a number", s)
	}
	mult := int64(-1)
	for _, u := range sizeUnits {
		if unit == u.name || unit == "" && u.name == "B" {
			mult = u.mult
			break
		}
	}
	if mult < 0 {
		return 0, invalid(what, "unknown unit %q (use B, KB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)", in[end:])
	}
	intPart, frac, hasDot := strings.Cut(num, ".")
	if strings.Contains(frac, ".") {
		return 0, invalid(what, "%q has more than one decimal point", s)
	}
	if intPart == "" || hasDot && frac == "" {
		return 0, invalid(what, "%q: a decimal point needs digits on both sides", s)
	}
	whole, err := strconv.ParseUint(intPart, 10, 64)
	if err != nil || whole > math.MaxInt64 {
		return 0, invalid(what, "%q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	hi, total := bits.Mul64(whole, uint64(mult))
	if hi != 0 || total > math.MaxInt64 {
		return 0, invalid(what, "%q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	// Fraction: floor(0.frac · mult) with a 128-bit product; rem < scale ≤
	// 10^18 keeps the quotient below 2^64, as bits.Div64 requires.
	var rem, fracBytes uint64 = 0, 0
	scale := uint64(1)
	for i := 0; i < len(frac) && i < 18; i++ {
		rem = rem*10 + uint64(frac[i]-'0')
		scale *= 10
	}
	if len(frac) > 0 {
		h, lo := bits.Mul64(rem, uint64(mult))
		fracBytes, _ = bits.Div64(h, lo, scale)
	}
	total += fracBytes
	if total > math.MaxInt64 {
		return 0, invalid(what, "%q is too large (at most %d bytes)", s, int64(math.MaxInt64))
	}
	return int64(total), nil
}

// FormatSize formats n bytes for people, in powers of 1000 with at most two
// decimals, rounded down: 0 → "0 B", 1536 → "1.53 KB", 50e9 → "50 GB".
// Its output (without rounding loss) parses back with ParseSize.
func FormatSize(n int64) string {
	if n < 0 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "KB", "MB", "GB", "TB", "PB", "EB"}
	i, div := 0, int64(1)
	for i < len(units)-1 && n/div >= 1000 {
		div *= 1000
		i++
	}
	whole, hundredths := n/div, int64(0)
	if div >= 1000 {
		hundredths = n % div / (div / 100)
	}
	switch {
	case hundredths == 0:
		return fmt.Sprintf("%d %s", whole, units[i])
	case hundredths%10 == 0:
		return fmt.Sprintf("%d.%d %s", whole, hundredths/10, units[i])
	default:
		return fmt.Sprintf("%d.%02d %s", whole, hundredths, units[i])
	}
}

// MaxExpiry is how far ahead ParseExpiry accepts a date.
const MaxExpiry = 100 * 365 * 24 * time.Hour

// ParseExpiry parses when a user's access ends, relative to now:
//
//	"30d", "12h", "2w"      that long after now
//	"2027-01-31"            the end of that day, UTC (access lasts through it)
//	"2027-01-31T18:00:00Z"  that instant (RFC 3339)
//	"never"                 the zero time: no expiry
//
// Dates not after now, spans of zero, and anything more than MaxExpiry ahead
// are refused with an error that says why. The result is in UTC, truncated to
// whole seconds.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	const what = "expiry"
	in := strings.TrimSpace(s)
	switch {
	case in == "":
		return time.Time{}, invalid(what, "empty")
	case len(in) > 40:
		return time.Time{}, invalid(what, "%d characters is too long", len(in))
	case strings.EqualFold(in, "never"):
		return time.Time{}, nil
	case in[0] == '-':
		return time.Time{}, invalid(what, "%q is negative", s)
	}
	var t time.Time
	if d, err := time.Parse(time.DateOnly, in); err == nil {
		t = d.AddDate(0, 0, 1)
	} else if ts, err := time.Parse(time.RFC3339, in); err == nil {
		t = ts
	} else {
		unit := in[len(in)-1]
		var per time.Duration
		switch unit {
		case 'h', 'H':
			per = time.Hour
		case 'd', 'D':
			per = 24 * time.Hour
		case 'w', 'W':
			per = 7 * 24 * time.Hour
		default:
			return time.Time{}, invalid(what, "%q is not a span like 30d, 12h or 2w, a date like 2027-01-31, or never", s)
		}
		digits := in[:len(in)-1]
		if digits != "" && (digits[0] < '0' || digits[0] > '9') {
			return time.Time{}, invalid(what, "%q is not a span like 30d, 12h or 2w, a date like 2027-01-31, or never", s)
		}
		if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
			return time.Time{}, invalid(what, "%q: want a whole number before %q", s, string(unit))
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n > int64(MaxExpiry/per) {
			return time.Time{}, invalid(what, "%q is more than 100 years ahead; use never", s)
		}
		if n == 0 {
			return time.Time{}, invalid(what, "%q is zero", s)
		}
		t = now.Add(time.Duration(n) * per)
	}
	t = t.UTC().Truncate(time.Second)
	if !t.After(now) {
		return time.Time{}, invalid(what, "%q is in the past", s)
	}
	if t.Sub(now) > MaxExpiry {
		return time.Time{}, invalid(what, "%q is more than 100 years ahead; use never", s)
	}
	return t, nil
}

// Reset periods: how often a user's traffic counters start again from zero.
const (
	ResetNever   = "never"
	ResetWeekly  = "weekly"
	ResetMonthly = "monthly"
)

// ParseReset parses a reset period, case-insensitively; "" means never.
func ParseReset(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", ResetNever:
		return ResetNever, nil
	case ResetWeekly:
		return ResetWeekly, nil
	case ResetMonthly:
		return ResetMonthly, nil
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return "", invalid("reset", "%q is not never, weekly or monthly", s)
}
