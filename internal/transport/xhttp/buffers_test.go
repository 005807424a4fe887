package xhttp

import "testing"

// TestReadBuf: a read loop holds the small buffer while idle, takes the
// large one when a read fills the small one, keeps it while reads bring
// burstEnd or more (a download's reads rarely fill 256 KiB), and gives it
// back once one brings less.
func TestReadBuf(t *testing.T) {
	for _, tc := range []struct {
		download bool
		large    int
	}{{false, burstRead}, {true, downloadRead}} {
		b := readBuf{download: tc.download}
		if n := len(b.get()); n != idleRead {
			t.Fatalf("download=%v: idle buffer %d bytes, want %d", tc.download, n, idleRead)
		}
		b.adapt(idleRead / 2)
		if n := len(b.get()); n != idleRead {
			t.Fatalf("download=%v: after a short read %d bytes, want %d", tc.download, n, idleRead)
		}
		b.adapt(idleRead) // a full small buffer: a burst
		if n := len(b.get()); n != tc.large {
			t.Fatalf("download=%v: in a burst %d bytes, want %d", tc.download, n, tc.large)
		}
		b.adapt(burstEnd) // not full, but still flowing
		if n := len(b.get()); n != tc.large {
			t.Fatalf("download=%v: after a read of %d, %d bytes, want the large %d still", tc.download, burstEnd, n, tc.large)
		}
		b.adapt(burstEnd - 1) // caught up
		if n := len(b.get()); n != idleRead || b.held != nil {
			t.Fatalf("download=%v: caught up, %d bytes (pooled array held: %v), want %d and none", tc.download, n, b.held != nil, idleRead)
		}
		b.adapt(idleRead)
		b.release()
		if b.large != nil || b.held != nil {
			t.Fatalf("download=%v: release kept the large buffer", tc.download)
		}
	}
}
