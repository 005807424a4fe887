#!/usr/bin/env bash
# bench/tun.sh — TCP throughput of Burrow's full-device (TUN) path next to
# its SOCKS5 frontend and a direct connection, in one run, with CPU-seconds
# per GiB. Runs as root in network namespaces it creates (client, router,
# server, site; see e2e/doc.go) and removes them when done; no traffic leaves
# the machine.
#   BURROW_TUN_BENCH_BYTES  bytes per transfer (default 536870912)
#   BURROW_TUN_BENCH_REPS   transfers per path and direction, best counts (default 3)
#   BURROW_TUN_BENCH_OUT    also write the table to this file
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
if [ "$(id -u)" != 0 ]; then echo "bench/tun.sh: needs root (network namespaces, TUN)" >&2; exit 1; fi
BURROW_TUN_BENCH=1 exec go test -count=1 -timeout 30m -run '^TestTUNBench$' ./e2e "$@"
