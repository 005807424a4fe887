//go:build linux

package control

import (
	"context"
	"testing"
	"time"
)

// BenchmarkFullSync100k: one new node, with an SQLite replica, joining a
// control plane (PostgreSQL) of 100,000 users; the time until it is in
// sync (issue 13: within 10 s). `-cpuprofile` shows where it goes.
//
//	go test -run XXX -bench FullSync100k -benchtime 1x ./internal/control/
func BenchmarkFullSync100k(b *testing.B) {
	ctx := context.Background()
	fb := newFleetBench(b)
	if err := fb.store.ImportUsers(ctx, benchUserList(benchUsers)); err != nil {
		b.Fatal(err)
	}
	ns := fb.createNodes(b.N)
	fb.startPlane()
	var total time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		fb.startReplicaNode(ns[i], i)
		fb.waitSynced(i)
		total += time.Since(start)
		i++
	}
	b.ReportMetric(total.Seconds()/float64(i), "s-fullsync")
}
