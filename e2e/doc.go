// Package e2e holds Burrow's network-namespace end-to-end tests. They run
// the real burrow binary as root in four namespaces joined by veth pairs:
//
//	client ──c0/r1── router ──r2/s0── server (burrow server run)
//	  burrow connect --tun       └──r3/t0── site (HTTP, DNS, UDP echo, load sink)
//
// and check what an observer on the client–router link sees. They skip, and
// say why, when not root or when the `ip` command is missing. The test binary
// doubles as the helper programs it runs inside the namespaces (see
// helperMain), so nothing is downloaded.
//
// Every namespace gets its own /etc/netns/NAME/resolv.conf, which `ip netns
// exec` mounts over /etc/resolv.conf; TestMain fails the run if the
// machine's /etc/resolv.conf is not byte-identical afterwards (and puts it
// back).
//
// Run: go test -count=1 -v ./e2e   (as root)
// Benchmark figures: BURROW_TUN_BENCH=1 go test -count=1 -run TestTUNBench -v ./e2e
// (bench/tun.sh does this).
package e2e
