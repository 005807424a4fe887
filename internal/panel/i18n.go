package panel

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Languages the panel speaks; the first is the default.
var languages = []string{"en", "ru"}

// pickLang chooses the page language: the cookie set by the switcher, else
// the browser's Accept-Language (first supported tag by q), else English.
func pickLang(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && supported(c.Value) {
		return c.Value
	}
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if supported(base) && q > bestQ {
			best, bestQ = base, q
		}
	}
	return best
}

func supported(lang string) bool { return slices.Contains(languages, lang) }

// tr returns the message key in lang. A key missing from the catalog shows
// as itself in brackets (TestCatalogComplete keeps that from shipping).
func tr(lang, key string) string {
	m, ok := catalog[key]
	if !ok {
		return "[" + key + "]"
	}
	if lang == "ru" {
		return m[1]
	}
	return m[0]
}

// sizeUnits are decimal units, as `burrow user` prints and parses them.
var sizeUnits = map[string][]string{
	"en": {"B", "KB", "MB", "GB", "TB", "PB", "EB"},
	"ru": {"Б", "КБ", "МБ", "ГБ", "ТБ", "ПБ", "ЭБ"},
}

// formatSize writes n bytes with one decimal in lang ("1.5 GB", "1,5 ГБ").
func formatSize(lang string, n int64) string {
	units := sizeUnits[lang]
	if units == nil {
		units = sizeUnits["en"]
	}
	if n < 1000 {
		return fmt.Sprintf("%d %s", n, units[0])
	}
	f, i := float64(n), 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	s := strconv.FormatFloat(f, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	if lang == "ru" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s + "\u00a0" + units[i]
}

// formatNum groups digits: 1,234,567 in English, 1 234 567 in Russian.
func formatNum(lang string, n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	sep := ","
	if lang == "ru" {
		sep = "\u00a0"
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(sep)
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

var monthsRU = []string{"янв.", "февр.", "марта", "апр.", "мая", "июня", "июля", "авг.", "сент.", "окт.", "нояб.", "дек."}

// formatDate writes t's UTC date in lang: "7 Dec 2026", "7 дек. 2026".
func formatDate(lang string, t time.Time) string {
	if t.IsZero() {
		return tr(lang, "never")
	}
	t = t.UTC()
	if lang == "ru" {
		return fmt.Sprintf("%d %s %d", t.Day(), monthsRU[t.Month()-1], t.Year())
	}
	return t.Format("2 Jan 2006")
}

// formatDateTime adds the UTC time of day.
func formatDateTime(lang string, t time.Time) string {
	if t.IsZero() {
		return tr(lang, "never")
	}
	return formatDate(lang, t) + " " + t.UTC().Format("15:04") + " UTC"
}

// formatDuration writes an uptime: "3 d 4 h", "3 д 4 ч".
func formatDuration(lang string, d time.Duration) string {
	days, hours, mins := int(d.Hours())/24, int(d.Hours())%24, int(d.Minutes())%60
	u := [3]string{"d", "h", "min"}
	if lang == "ru" {
		u = [3]string{"д", "ч", "мин"}
	}
	switch {
	case days > 0:
		return fmt.Sprintf("%d %s %d %s", days, u[0], hours, u[1])
	case hours > 0:
		return fmt.Sprintf("%d %s %d %s", hours, u[1], mins, u[2])
	}
	return fmt.Sprintf("%d %s", mins, u[2])
}
