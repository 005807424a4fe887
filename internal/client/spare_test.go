package client

import (
	"context"
	"net"
	"testing"
	"time"
)

// spareState returns the ready spare conn (nil if none) and whether a handshake is under way.
func (t *Tunnel) spareState() (net.Conn, bool) {
	t.spare.mu.Lock()
	defer t.spare.mu.Unlock()
	return t.spare.conn, t.spare.filled != nil
}

// waitSpare waits until the tunnel holds a ready spare other than old.
func waitSpare(t *testing.T, tun *Tunnel, old net.Conn) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c, _ := tun.spareState(); c != nil && c != old {
			return c
		}
	}
	t.Fatal("no spare connection within 10 s")
	return nil
}

func TestSpare(t *testing.T) {
	bed := startBed(t)
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{Spare: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if c, busy := tun.spareState(); c != nil || busy {
		t.Fatalf("before any dial: spare %v, handshake under way %v; want none", c, busy)
	}
	if err := fetch(ctx, tun, bed.target, 100<<10); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	// The dial arranged for the next spare before it returned (what
	// TestNoSpareByDefault relies on to see that none is coming).
	if c, busy := tun.spareState(); c == nil && !busy && !tun.spareScheduled() {
		t.Error("after the first fetch: no spare ready, being opened or scheduled")
	}
	spare := waitSpare(t, tun, nil)

	// The next connection takes the spare, and a new one is opened behind it.
	if err := fetch(ctx, tun, bed.target, 100<<10); err != nil {
		t.Fatalf("fetch over the spare: %v", err)
	}
	if c, _ := tun.spareState(); c == spare {
		t.Fatal("the spare was not taken by the next connection")
	}
	spare = waitSpare(t, tun, spare)

	// A spare that died (here: its socket closed under it) is not used.
	tun.spare.mu.Lock()
	tun.spare.raw.Close()
	tun.spare.mu.Unlock()
	if err := fetch(ctx, tun, bed.target, 100<<10); err != nil {
		t.Fatalf("fetch after the spare died: %v", err)
	}
	spare = waitSpare(t, tun, spare)

	// Close drops the spare and stops opening new ones.
	tun.Close()
	if c, busy := tun.spareState(); c != nil || busy {
		t.Fatalf("after Close: spare %v, handshake under way %v; want none", c, busy)
	}
	if err := spare.SetDeadline(time.Now().Add(time.Second)); err == nil {
		if _, err := spare.Read(make([]byte, 1)); err == nil {
			t.Error("spare conn still readable after Close")
		}
	}
}

func TestSpareExpires(t *testing.T) {
	bed := startBed(t)
	old := spareIdle
	spareIdle = 200 * time.Millisecond
	defer func() { spareIdle = old }()
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{Spare: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1000); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	waitSpare(t, tun, nil)
	// An idle client lets its spare go once spareIdle has passed: waited for as
	// an event, with a budget a busy machine cannot run out of.
	const budget = 30 * time.Second
	for deadline := time.Now().Add(budget); ; time.Sleep(5 * time.Millisecond) {
		c, busy := tun.spareState()
		if c == nil && !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v idle: spare %v, handshake under way %v; want none (an idle client holds no spare)", budget, c, busy)
		}
	}
}

func TestNoSpareByDefault(t *testing.T) {
	bed := startBed(t)
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1000); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	// With spares on, the connection's dial leaves a spare ready, being
	// opened or scheduled (fillSpareLater) before it returns; so right after
	// the fetch, with none of the three, no spare is coming.
	if c, busy := tun.spareState(); c != nil || busy || tun.spareScheduled() {
		t.Fatalf("Spare off: spare %v, handshake under way %v, scheduled %v; want none", c, busy, tun.spareScheduled())
	}
}

// spareScheduled reports whether a spare is to be opened after spareDelay.
func (t *Tunnel) spareScheduled() bool {
	t.spare.mu.Lock()
	defer t.spare.mu.Unlock()
	return t.spare.delay != nil
}
