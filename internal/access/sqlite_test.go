package access

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Child-process modes: the test binary re-executes itself with these
// environment variables set to act as a second CLI or server process.
const (
	envChildMode = "BURROW_ACCESS_TEST_CHILD"
	envChildDB   = "BURROW_ACCESS_TEST_DB"
	envChildID   = "BURROW_ACCESS_TEST_ID"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChildMode); mode != "" {
		if err := runChild(mode, os.Getenv(envChildDB), os.Getenv(envChildID)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	childUsers  = 15 // users each writer creates
	childRounds = 30 // AddTraffic batches each writer sends
)

// runChild is one writer process: it creates users and adds traffic to its
// own users and to the shared user with ID 1.
func runChild(mode, path, id string) error {
	s, err := OpenSQLite(path)
	if err != nil {
		return err
	}
	defer s.Close()
	switch mode {
	case "open":
		_, err := s.CreateUser(context.Background(), NewUser{Name: "proc-" + id})
		return err
	case "write":
		return writeLoad(s, "proc-"+id)
	case "dup":
		_, err := s.CreateUser(context.Background(), NewUser{Name: "Same"})
		if errors.Is(err, ErrExists) {
			fmt.Print("exists")
			return nil
		}
		if err == nil {
			fmt.Print("created")
		}
		return err
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// writeLoad creates childUsers users named prefix-N and sends childRounds
// AddTraffic batches of {Up: 1, Down: 2} to each of them and to user 1.
func writeLoad(s *SQLiteStore, prefix string) error {
	ctx := context.Background()
	ids := []int64{1}
	for j := range childUsers {
		u, err := s.CreateUser(ctx, NewUser{Name: fmt.Sprintf("%s-%d", prefix, j), Quota: 1e9})
		if err != nil {
			return err
		}
		ids = append(ids, u.ID)
	}
	for range childRounds {
		deltas := map[int64]Traffic{}
		for _, id := range ids {
			deltas[id] = Traffic{Up: 1, Down: 2}
		}
		if err := s.AddTraffic(ctx, deltas, "2026-11-27"); err != nil {
			return err
		}
		if _, err := s.ListUsers(ctx); err != nil {
			return err
		}
	}
	return nil
}

func openTemp(t testing.TB) (*SQLiteStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "burrow.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite(%s) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSQLiteUsers(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }

	exp := now.Add(30 * 24 * time.Hour)
	anna, err := s.CreateUser(ctx, NewUser{Name: "Anna", Quota: 50e9, ExpiresAt: exp, Reset: "monthly", Note: "sister"})
	if err != nil {
		t.Fatalf("CreateUser(Anna) = %v", err)
	}
	if anna.ID == 0 || anna.Name != "Anna" || anna.Quota != 50e9 || !anna.ExpiresAt.Equal(exp) || anna.Reset != ResetMonthly ||
		anna.Note != "sister" || !anna.CreatedAt.Equal(now) || !anna.PeriodStart.Equal(now) || anna.Revoked ||
		len(anna.SubToken) != 43 || anna.UUID == ([16]byte{}) {
		t.Errorf("CreateUser(Anna) = %+v", anna)
	}
	bob, err := s.CreateUser(ctx, NewUser{Name: "Боб"})
	if err != nil || bob.Reset != ResetNever || !bob.ExpiresAt.IsZero() {
		t.Fatalf("CreateUser(Боб) = %+v, %v", bob, err)
	}

	for _, name := range []string{"anna", "ANNA", "Anna", "боб"} {
		if _, err := s.CreateUser(ctx, NewUser{Name: name}); !errors.Is(err, ErrExists) {
			t.Errorf("CreateUser(%q) duplicate = %v, want ErrExists", name, err)
		}
	}
	badNew := []struct {
		nu  NewUser
		why string
	}{
		{NewUser{Name: ""}, "empty"},
		{NewUser{Name: strings.Repeat("z", 5000)}, "5000 characters"},
		{NewUser{Name: "ctl\x07"}, "control character"},
		{NewUser{Name: "neg", Quota: -1}, "negative"},
		{NewUser{Name: "past", ExpiresAt: now.Add(-time.Second)}, "in the past"},
		{NewUser{Name: "reset", Reset: "daily"}, "not never, weekly or monthly"},
		{NewUser{Name: "note", Note: "a\x00b"}, "control character"},
	}
	for _, tc := range badNew {
		if _, err := s.CreateUser(ctx, tc.nu); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("CreateUser(%.30q) = %v, want ErrInvalid saying %q", tc.nu.Name, err, tc.why)
		}
	}

	if u, err := s.UserByName(ctx, "aNNa"); err != nil || u.ID != anna.ID || u.UUID != anna.UUID {
		t.Errorf("UserByName(aNNa) = %+v, %v, want Anna", u, err)
	}
	if u, err := s.UserByUUID(ctx, anna.UUID); err != nil || u.ID != anna.ID {
		t.Errorf("UserByUUID = %+v, %v, want Anna", u, err)
	}
	if u, err := s.UserBySubToken(ctx, anna.SubToken); err != nil || u.ID != anna.ID {
		t.Errorf("UserBySubToken = %+v, %v, want Anna", u, err)
	}
	if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByName(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := s.UserByUUID(ctx, NewUUID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByUUID(random) = %v, want ErrNotFound", err)
	}

	// Update: only the given fields change; a reset change starts a period.
	now = now.Add(time.Hour)
	q, note, never := int64(1<<30), "", time.Time{}
	u, err := s.UpdateUser(ctx, bob.ID, UserUpdate{Quota: &q, Note: &note, ExpiresAt: &never})
	if err != nil || u.Quota != 1<<30 || u.Reset != ResetNever || !u.PeriodStart.Equal(bob.PeriodStart) {
		t.Errorf("UpdateUser(quota) = %+v, %v", u, err)
	}
	weekly := "weekly"
	if u, err = s.UpdateUser(ctx, bob.ID, UserUpdate{Reset: &weekly}); err != nil || u.Reset != ResetWeekly ||
		!u.PeriodStart.Equal(now) || u.Quota != 1<<30 {
		t.Errorf("UpdateUser(reset) = %+v, %v", u, err)
	}
	neg, past := int64(-5), now.Add(-time.Hour)
	for _, upd := range []UserUpdate{{Quota: &neg}, {ExpiresAt: &past}} {
		if _, err := s.UpdateUser(ctx, bob.ID, upd); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpdateUser(%+v) = %v, want ErrInvalid", upd, err)
		}
	}
	if _, err := s.UpdateUser(ctx, 999, UserUpdate{Quota: &q}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateUser(999) = %v, want ErrNotFound", err)
	}

	// Traffic: batched, saturating, last-seen day only moves forward.
	if err := s.AddTraffic(ctx, map[int64]Traffic{anna.ID: {10, 20}, bob.ID: {1, 2}, 999: {5, 5}}, "2026-11-27"); err != nil {
		t.Fatalf("AddTraffic = %v", err)
	}
	if err := s.AddTraffic(ctx, map[int64]Traffic{anna.ID: {math.MaxInt64, 1}}, "2026-11-20"); err != nil {
		t.Fatalf("AddTraffic(huge) = %v", err)
	}
	a, _ := s.UserByName(ctx, "anna")
	if a.BytesUp != math.MaxInt64 || a.BytesDown != 21 || a.LastSeenDay != "2026-11-27" {
		t.Errorf("after AddTraffic: up %d down %d day %q, want MaxInt64, 21, 2026-11-27", a.BytesUp, a.BytesDown, a.LastSeenDay)
	}
	for _, day := range []string{"", "2026-13-01", "27.11.2026", "2026-11-27 "} {
		if err := s.AddTraffic(ctx, map[int64]Traffic{anna.ID: {1, 1}}, day); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddTraffic(day %q) = %v, want ErrInvalid", day, err)
		}
	}
	if err := s.AddTraffic(ctx, map[int64]Traffic{anna.ID: {-1, 0}}, "2026-11-27"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddTraffic(negative) = %v, want ErrInvalid", err)
	}
	if err := s.ResetTraffic(ctx, anna.ID, now); err != nil {
		t.Fatalf("ResetTraffic = %v", err)
	}
	a, _ = s.UserByName(ctx, "anna")
	if a.BytesUp != 0 || a.BytesDown != 0 || !a.PeriodStart.Equal(now) || a.LastSeenDay != "2026-11-27" {
		t.Errorf("after ResetTraffic: %+v", a)
	}

	// Rotate: the old UUID no longer finds the user; the token stays.
	r, err := s.RotateUUID(ctx, anna.ID)
	if err != nil || r.UUID == anna.UUID || r.SubToken != anna.SubToken {
		t.Errorf("RotateUUID = %+v, %v", r, err)
	}
	if _, err := s.UserByUUID(ctx, anna.UUID); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByUUID(old) = %v, want ErrNotFound", err)
	}

	// Revoke.
	if err := s.RevokeUser(ctx, bob.ID); err != nil {
		t.Fatalf("RevokeUser = %v", err)
	}
	b, _ := s.UserByName(ctx, "боб")
	if err := b.Usable(now); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked Usable = %v, want ErrRevoked", err)
	}
	for name, err := range map[string]error{
		"RevokeUser":   s.RevokeUser(ctx, 999),
		"ResetTraffic": s.ResetTraffic(ctx, 999, now),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(999) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.RotateUUID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("RotateUUID(999) = %v, want ErrNotFound", err)
	}

	users, err := s.ListUsers(ctx)
	if err != nil || len(users) != 2 || users[0].ID != anna.ID || users[1].ID != bob.ID {
		t.Errorf("ListUsers = %d users, %v, want Anna, Боб", len(users), err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Errorf("stat %s: %v", filepath.Base(path+suffix), err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode of %s = %v, want 0600", filepath.Base(path+suffix), fi.Mode().Perm())
		}
	}
}

func TestSQLiteMigrations(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, err := s.CreateUser(ctx, NewUser{Name: "keep"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 3 {
		s, err := OpenSQLite(path)
		if err != nil {
			t.Fatalf("reopen = %v", err)
		}
		var rows int
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(migrations) {
			t.Errorf("schema_migrations rows = %d, %v, want %d", rows, err, len(migrations))
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != latestVersion() {
			t.Errorf("SchemaVersion = %d, %v, want %d", v, err, latestVersion())
		}
		if _, err := s.UserByName(ctx, "keep"); err != nil {
			t.Errorf("user lost after reopen: %v", err)
		}
		var mode string
		if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v, want wal", mode, err)
		}
		var fk int
		if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
			t.Errorf("foreign_keys = %d, %v, want 1", fk, err)
		}
		s.Close()
	}

	// A database from a newer burrow is refused, not silently used.
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO schema_migrations VALUES (?, 0)`, latestVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(path); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Errorf("OpenSQLite(newer schema) = %v, want an error saying newer", err)
	}
	if _, err := OpenSQLite(path + "?mode=ro"); err == nil {
		t.Errorf("OpenSQLite(path with '?') = nil, want error")
	}
}

// TestSQLiteConcurrentGoroutines runs writers on one shared store and on
// separate stores (separate connection pools) at the same time.
func TestSQLiteConcurrentGoroutines(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Name: "shared"}); err != nil {
		t.Fatal(err)
	}
	const writers = 6
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				own, err := OpenSQLite(path)
				if err != nil {
					errs <- err
					return
				}
				defer own.Close()
				st = own
			}
			errs <- writeLoad(st, fmt.Sprintf("g%d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("writer: %v", err)
		}
	}
	checkTotals(t, s, writers)
}

// TestSQLiteConcurrentProcesses runs writers in separate processes (as the
// CLI and the server are) while goroutines of this process write too.
func TestSQLiteConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	s, path := openTemp(t)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, NewUser{Name: "shared"}); err != nil {
		t.Fatal(err)
	}
	const procs, goroutines = 4, 2
	var wg sync.WaitGroup
	errs := make(chan error, procs+goroutines)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runChildProcess(t, "write", path, i)
		}()
	}
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- writeLoad(s, fmt.Sprintf("local%d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("writer: %v", err)
		}
	}
	checkTotals(t, s, procs+goroutines)
}

// TestSQLiteOpenRace creates a database from several processes at once: each
// migration must be applied exactly once and every user kept.
func TestSQLiteOpenRace(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "fresh.db")
	const procs = 6
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runChildProcess(t, "open", path, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("child: %v", err)
		}
	}
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	users, err := s.ListUsers(context.Background())
	if err != nil || len(users) != procs {
		t.Errorf("ListUsers = %d users, %v, want %d", len(users), err, procs)
	}
	var rows int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(migrations) {
		t.Errorf("schema_migrations rows = %d, %v, want %d", rows, err, len(migrations))
	}
}

func runChildProcess(t *testing.T, mode, path string, id int) error {
	_, err := childOutput(mode, path, id)
	return err
}

func childOutput(mode, path string, id int) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildMode+"="+mode, envChildDB+"="+path, envChildID+"="+strconv.Itoa(id))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("process %d: %v: %s", id, err, out)
	}
	return string(out), nil
}

// TestSQLiteDuplicateRace adds the same name from several processes at once:
// exactly one wins, the others get ErrExists.
func TestSQLiteDuplicateRace(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	_, path := openTemp(t)
	const procs = 5
	var wg sync.WaitGroup
	outs := make(chan string, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := childOutput("dup", path, i)
			if err != nil {
				t.Errorf("child: %v", err)
			}
			outs <- out
		}()
	}
	wg.Wait()
	close(outs)
	count := map[string]int{}
	for out := range outs {
		count[out]++
	}
	if count["created"] != 1 || count["exists"] != procs-1 {
		t.Errorf("results = %v, want 1 created and %d exists", count, procs-1)
	}
}

// checkTotals verifies that nothing written by n writeLoad runs was lost.
func checkTotals(t *testing.T, s *SQLiteStore, n int) {
	t.Helper()
	users, err := s.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1+n*childUsers {
		t.Errorf("users = %d, want %d", len(users), 1+n*childUsers)
	}
	for _, u := range users {
		want := Traffic{childRounds, 2 * childRounds}
		if u.ID == 1 {
			want = Traffic{int64(n * childRounds), int64(2 * n * childRounds)}
		}
		if u.BytesUp != want.Up || u.BytesDown != want.Down || u.LastSeenDay != "2026-11-27" {
			t.Errorf("user %q: up %d down %d day %q, want %d %d 2026-11-27", u.Name, u.BytesUp, u.BytesDown, u.LastSeenDay, want.Up, want.Down)
		}
	}
}

func TestResetDuePeriods(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return t0 }
	weekly, err := s.CreateUser(ctx, NewUser{Name: "weekly", Reset: ResetWeekly, Quota: 100})
	if err != nil {
		t.Fatal(err)
	}
	monthly, _ := s.CreateUser(ctx, NewUser{Name: "monthly", Reset: ResetMonthly})
	never, _ := s.CreateUser(ctx, NewUser{Name: "never"})
	all := map[int64]Traffic{weekly.ID: {100, 50}, monthly.ID: {1, 1}, never.ID: {2, 2}}
	if err := s.AddTraffic(ctx, all, "2026-11-05"); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(8 * 24 * time.Hour)
	w, _ := s.UserByName(ctx, "weekly")
	if err := w.Usable(now); err != nil {
		t.Errorf("Usable after the period ended = %v, want nil (counters belong to the old period)", err)
	}
	if n, err := ResetDuePeriods(ctx, s, now); n != 1 || err != nil {
		t.Errorf("ResetDuePeriods = %d, %v, want 1, nil", n, err)
	}
	w, _ = s.UserByName(ctx, "weekly")
	if w.BytesUp != 0 || w.BytesDown != 0 || !w.PeriodStart.Equal(t0.Add(7*24*time.Hour)) {
		t.Errorf("weekly after rollover: up %d down %d start %v", w.BytesUp, w.BytesDown, w.PeriodStart)
	}
	for _, name := range []string{"monthly", "never"} {
		if u, _ := s.UserByName(ctx, name); u.BytesUp == 0 || !u.PeriodStart.Equal(t0) {
			t.Errorf("%s was reset: %+v", name, u)
		}
	}
	// A second rollover for the same period (another process) wipes nothing.
	if err := s.AddTraffic(ctx, map[int64]Traffic{weekly.ID: {7, 7}}, "2026-11-09"); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetTraffic(ctx, weekly.ID, t0.Add(7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := ResetDuePeriods(ctx, s, now); n != 0 || err != nil {
		t.Errorf("second ResetDuePeriods = %d, %v, want 0, nil", n, err)
	}
	if w, _ = s.UserByName(ctx, "weekly"); w.BytesUp != 7 || w.BytesDown != 7 {
		t.Errorf("repeated reset wiped the new period: up %d down %d, want 7 7", w.BytesUp, w.BytesDown)
	}
	if err := s.ResetTraffic(ctx, weekly.ID, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ResetTraffic(zero time) = %v, want ErrInvalid", err)
	}
}
