package tun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateFileKeyedByNamespace: the state file names this process's
// network namespace and the interface, so runs in two namespaces (each
// with its own burrow0) never share one.
func TestStateFileKeyedByNamespace(t *testing.T) {
	ns, err := netnsID("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no /proc/self/ns/net: %v", err)
	}
	got, err := StateFile("burrow0")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/run/burrow/tun-%d-burrow0.json", ns)
	if got != want {
		t.Errorf("StateFile(burrow0) = %q, want %q", got, want)
	}
	if other, _ := StateFile("burrow1"); other == got {
		t.Errorf("StateFile(burrow1) = StateFile(burrow0) = %q", got)
	}
}

func TestOwnerAlive(t *testing.T) {
	parent := os.Getppid() // the go tool: alive while we run
	start, err := processStart(parent)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		st   state
		want bool
	}{
		{"live process", state{PID: parent, PIDStart: start}, true},
		{"pid reused by another process", state{PID: parent, PIDStart: start + 1}, false},
		{"this process (undo of its own run)", state{PID: os.Getpid()}, false},
		{"no such process", state{PID: 1 << 30, PIDStart: 1}, false},
		{"no pid recorded", state{}, false},
	}
	for _, tt := range tests {
		if got := tt.st.ownerAlive(); got != tt.want {
			t.Errorf("%s: ownerAlive = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRestoreLeavesLiveRunAlone: the state of a burrow still running is not
// a leftover; Restore refuses and keeps the file.
func TestRestoreLeavesLiveRunAlone(t *testing.T) {
	parent := os.Getppid()
	start, err := processStart(parent)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tun-1-burrow0.json")
	if err := writeState(path, &state{PID: parent, PIDStart: start, Device: "burrow0", Table: DefaultTable, Mark: DefaultMark}); err != nil {
		t.Fatal(err)
	}
	err = Restore(path)
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), fmt.Sprint(parent)) {
		t.Errorf("Restore with a live owner = %v, want ErrRunning naming pid %d", err, parent)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("state file after the refused restore: %v", err)
	}
}

func TestRestoreDamagedState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tun-1-burrow0.json")
	os.WriteFile(path, []byte(`{"Table": 0`), 0o600)
	if err := Restore(path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("Restore(damaged) = %v, want an error saying it is damaged", err)
	}
	if err := Restore(filepath.Join(t.TempDir(), "none.json")); err != nil {
		t.Errorf("Restore(missing) = %v, want nil", err)
	}
}

// TestWriteFileAtomic: the file is replaced whole, with the mode asked for,
// and no temporary file is left beside it.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path, []byte("old content that is longer"), 0o644)
	if err := writeFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("after writeFileAtomic: %q %v, want \"new\" -rw-------", b, fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries after writeFileAtomic, want 1", len(ents))
	}
}
