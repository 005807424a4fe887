package panel

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// usedKeys lists every message key the panel can show: the literal ones in
// the templates and the code, and those it builds from known values.
func usedKeys(t *testing.T) map[string]bool {
	keys := map[string]bool{}
	lit := regexp.MustCompile(`\bT "([a-z0-9_.-]+)"|tr\([a-zA-Z.]+, "([a-z0-9_. -]+)"\)|(?:Title|Flash): "([a-z0-9_.-]+)"|fail\([^)]*"([a-z.]+)"\)|again\([^,]+, "([a-z.]+)"\)|"((?:err|field)\.[a-z]+)"`)
	err := fs.WalkDir(os.DirFS("."), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") || !(strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".html")) {
			return err
		}
		b, err := os.ReadFile(filepath.FromSlash(path))
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			for _, k := range m[1:] {
				if k != "" {
					keys[k] = true
				}
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	add := func(prefix string, vals ...string) {
		for _, v := range vals {
			keys[prefix+v] = true
		}
	}
	add("status.", "active", "revoked", "expired", "over quota", "unusable")
	add("role.", access.RoleOwner, access.RoleOperator, access.RoleViewer)
	add("reset.", access.ResetNever, access.ResetWeekly, access.ResetMonthly)
	add("filter.", "all", access.FilterActive, access.FilterExpiring, access.FilterOverQuota, access.FilterRevoked, access.FilterOnline)
	add("nav.", "users", "server", "admins")
	add("field.", "name", "quota", "expires", "reset", "note")
	add("users.count.", "one", "few", "many")
	add("audit.", "login", "logout", "user.add", "user.edit", "user.revoke", "user.enable", "user.rotate", "user.reset-traffic",
		"admin.add", "admin.remove", "admin.role", "admin.setup", "admin.password", "admin.cli-add", "admin.cli-remove", "admin.cli-totp", "admin.cli-totp-off", "admin.totp-on", "admin.totp-off")
	add("done.", "setup", "added", "saved", "unchanged", "revoke", "enable", "rotate", "reset-traffic", "admin-remove", "admin-role",
		"password", "confirm-totp", "off-totp")
	for m := telemetry.ConnOK; m <= telemetry.Fallback; m++ {
		add("metric.", m.String())
	}
	add("metric.", "reports")
	add("noderole.", "exit", "relay")
	add("nodestate.", "ok", "unhealthy", "stale", "new", "revoked")
	return keys
}

// TestCatalogComplete: every key shown has an English and a Russian text.
func TestCatalogComplete(t *testing.T) {
	keys := usedKeys(t)
	if len(keys) < 150 {
		t.Fatalf("found only %d keys in use: the scan is broken", len(keys))
	}
	for k := range keys {
		m, ok := catalog[k]
		if !ok {
			t.Errorf("key %q is used but not in the catalog", k)
			continue
		}
		if strings.TrimSpace(m[0]) == "" || strings.TrimSpace(m[1]) == "" {
			t.Errorf("key %q lacks a text: %q", k, m)
		}
		if !strings.ContainsFunc(m[1], func(r rune) bool { return unicode.Is(unicode.Cyrillic, r) }) {
			t.Errorf("key %q: Russian text %q has no Russian in it", k, m[1])
		}
	}
	for k := range catalog {
		if !keys[k] {
			t.Errorf("catalog key %q is never used", k)
		}
	}
}
