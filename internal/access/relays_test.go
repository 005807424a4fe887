package access

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestRelays(t *testing.T) {
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	taken := [][8]byte{{1, 2, 3, 4, 5, 6, 7, 8}}
	r, err := s.CreateRelay(ctx, "msk-1", taken)
	if err != nil {
		t.Fatal(err)
	}
	if r.ShortID == taken[0] || r.ShortID == ([8]byte{}) || r.Secret == ([16]byte{}) || r.Revoked {
		t.Fatalf("CreateRelay = %+v, want a fresh short ID, a secret, not revoked", r)
	}
	again, err := s.CreateRelay(ctx, "MSK-1", taken)
	if err != nil || again.ID != r.ID || again.Secret != r.Secret || again.ShortID != r.ShortID {
		t.Errorf("CreateRelay of an existing name = %+v, %v; want the same relay %+v", again, err, r)
	}
	if err := s.SetRelayAnnounce(ctx, r.ID, "vk.com", "vk.com:443", "198.51.100.1:443"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRelay(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListRelays(ctx)
	if err != nil || len(list) != 1 || !list[0].Revoked || list[0].AnnouncedSNI != "vk.com" || list[0].AnnouncedAddr != "198.51.100.1:443" {
		t.Fatalf("ListRelays = %+v, %v; want the one relay, revoked, with its announcement", list, err)
	}
	if _, err := s.CreateRelay(ctx, "msk-1", taken); !errors.Is(err, ErrRelayRevoked) {
		t.Errorf("CreateRelay of a revoked name: %v, want ErrRelayRevoked", err)
	}
	if _, err := s.RelayByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RelayByName(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.RevokeRelay(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeRelay(unknown id) = %v, want ErrNotFound", err)
	}
	if _, err := s.CreateRelay(ctx, "", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("CreateRelay(\"\") = %v, want ErrInvalid", err)
	}
}
