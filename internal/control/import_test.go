package control

import (
	"errors"
	"testing"

	"github.com/burrow-vpn/burrow/internal/access"
)

// TestImportUsers: imported users keep their credentials and state, each
// is logged, and a clash imports nothing.
func TestImportUsers(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		in := benchUserList(3)
		in[1].Revoked, in[1].BytesUp, in[1].Note = true, 777, "moved"
		if err := s.ImportUsers(ctx, in); err != nil {
			t.Fatal(err)
		}
		for _, want := range in {
			got, err := s.UserByUUID(ctx, want.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != want.Name || got.SubToken != want.SubToken || got.Revoked != want.Revoked ||
				got.BytesUp != want.BytesUp || got.Note != want.Note || got.Quota != want.Quota || !got.PeriodStart.Equal(want.PeriodStart) {
				t.Fatalf("imported %+v, stored %+v", want, got)
			}
		}
		cs := allChanges(t, s, 0)
		if len(cs) != 3 || cs[2].Version != 3 || cs[1].User.Note != "moved" {
			t.Fatalf("changes after import = %+v, want 3 user changes", cs)
		}
		clash := benchUserList(2)
		clash[0].Name, clash[1].Name = "fresh0", "fresh1"
		clash[1].UUID = in[0].UUID
		if err := s.ImportUsers(ctx, clash); !errors.Is(err, access.ErrExists) {
			t.Fatalf("import with a UUID taken = %v, want ErrExists", err)
		}
		if v, _ := s.Version(ctx); v != 3 {
			t.Fatalf("a failed import moved the version to %d", v)
		}
		if _, err := s.UserByName(ctx, clash[0].Name); !errors.Is(err, access.ErrNotFound) {
			t.Fatalf("a failed import left user %q: %v", clash[0].Name, err)
		}
	})
}
