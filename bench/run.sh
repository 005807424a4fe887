#!/usr/bin/env bash
# bench/run.sh — Burrow's one-command benchmark: a direct connection, a plain
# TCP forwarder, Xray-core v1.260327.0 (VLESS+REALITY+Vision) and Burrow, side
# by side on loopback, in the same run. See bench/README.md.
#
# Everything listens on 127.0.0.1 only. The script kills only the processes it
# started (by PID) when it exits; the load tool stops the proxies it starts.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_BYTES=${BENCH_BYTES:-1073741824}   # bytes per throughput test (split over the streams)
BENCH_STREAMS=${BENCH_STREAMS:-8}
BENCH_REPS=${BENCH_REPS:-3}
BENCH_TTFB_CONNS=${BENCH_TTFB_CONNS:-500}
BENCH_ECHO=${BENCH_ECHO:-1000}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
BENCH_IDLE_WAIT=${BENCH_IDLE_WAIT:-3s}
BENCH_SYSTEMS=${BENCH_SYSTEMS:-"direct forwarder xray burrow burrow-vision burrow-xhttp"}
BENCH_TESTS=${BENCH_TESTS:-idle,ttfb,rtt,plain1,plainN,tls1,tlsN}
BENCH_OUT=${BENCH_OUT:-$ROOT/bench/results/latest.json}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}     # seconds, whole measurement phase
BENCH_XRAY=${BENCH_XRAY:-}               # a prebuilt xray binary instead of building one
BENCH_BURROW=${BENCH_BURROW:-}           # a prebuilt burrow binary instead of building one
BENCH_KEEP=${BENCH_KEEP:-0}              # 1: keep the work directory (configs, logs)

say() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
has() { [[ " $BENCH_SYSTEMS " == *" $1 "* ]]; }
for s in $BENCH_SYSTEMS; do
	case $s in
	direct | forwarder | xray | burrow | burrow-vision | burrow-xhttp) ;;
	*)
		echo "bench: unknown system '$s' in BENCH_SYSTEMS (have: direct forwarder xray burrow burrow-vision burrow-xhttp)" >&2
		exit 2
		;;
	esac
done
drop() { BENCH_SYSTEMS=$(printf ' %s ' "$BENCH_SYSTEMS" | sed "s/ $1 / /g"); }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/burrow-bench.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 200); do # the load tool may need a while to stop its proxies
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [[ $BENCH_KEEP == 1 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)

# An idle proxied connection costs a process up to six descriptors: two sockets
# and, where Go relays with splice, a pipe pair per direction.
need=$((BENCH_IDLE_CONNS * 8 + 1024))
for n in 1048576 65536 "$(ulimit -Hn)"; do
	ulimit -n "$n" 2>/dev/null && break
done
if (($(ulimit -n) < need)); then
	say "warning: open-file limit $(ulimit -n) < $need; the idle test may fall short"
fi

say "work directory $WORK"
say "building the load tool"
go build -o "$WORK/loadtool" ./bench/loadtool
LT=$WORK/loadtool

if has xray; then
	if [[ -n $BENCH_XRAY ]]; then
		XRAY=$BENCH_XRAY
	else
		XRAY=$WORK/xray
		for _ in $(seq 120); do # the interop module may still be being written
			[[ -f interop/go.mod ]] && break
			say "waiting for interop/go.mod"
			sleep 5
		done
		say "building xray-core from the interop module"
		if ! timeout 1200 go build -C interop -o "$XRAY" github.com/xtls/xray-core/main >"$WORK/xray-build.log" 2>&1; then
			say "xray-core does not build; leaving it out:"
			tail -5 "$WORK/xray-build.log" >&2
			drop xray
		fi
	fi
fi
any_burrow() { has burrow || has burrow-vision || has burrow-xhttp; }
drop_burrow() { drop burrow; drop burrow-vision; drop burrow-xhttp; }
if any_burrow; then
	if [[ -n $BENCH_BURROW ]]; then
		BURROW=$BENCH_BURROW
	else
		BURROW=$WORK/burrow
		say "building burrow"
		if ! timeout 600 go build -o "$BURROW" ./cmd/burrow >"$WORK/burrow-build.log" 2>&1; then
			say "burrow does not build; leaving it out:"
			tail -5 "$WORK/burrow-build.log" >&2
			drop_burrow
		fi
	fi
fi

mapfile -t P < <("$LT" freeport -n 8)
SINK=127.0.0.1:${P[0]} SINKTLS=127.0.0.1:${P[1]} COVER=127.0.0.1:${P[2]} FWD=127.0.0.1:${P[3]}
XSRV=127.0.0.1:${P[4]} XSOCKS=127.0.0.1:${P[5]} BSRV=127.0.0.1:${P[6]} BSOCKS=127.0.0.1:${P[7]}

"$LT" sink -plain "$SINK" -tls "$SINKTLS" -cover "$COVER" -sni cover.test >"$WORK/sink.log" 2>&1 &
SINKPID=$!
PIDS+=("$SINKPID")
for a in "$SINK" "$SINKTLS" "$COVER"; do "$LT" waitport -addr "$a"; done
say "sink on $SINK, inner-TLS sink on $SINKTLS, cover site on $COVER"

q() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
entries=()

has direct && entries+=('{"name": "direct", "desc": "no proxy: the load tool talks to the sink itself"}')
has forwarder && entries+=("{\"name\": \"forwarder\", \"desc\": \"plain SOCKS5 TCP forwarder, io.Copy between TCP sockets (splice)\", \"socks\": $(q "$FWD"),
  \"procs\": [{\"role\": \"client\", \"argv\": [$(q "$LT"), \"forward\", \"-listen\", $(q "$FWD")], \"ready\": $(q "$FWD")}]}")

if has xray; then
	read -r XPRIV XPUB XUUID XSID < <("$LT" keys)
	cat >"$WORK/xray-server.json" <<EOF
{
  "log": {"loglevel": "${BENCH_XRAY_LOGLEVEL:-warning}", "access": "none"},
  "inbounds": [{
    "listen": "127.0.0.1", "port": ${P[4]}, "protocol": "vless",
    "settings": {"clients": [{"id": "$XUUID", "flow": "xtls-rprx-vision"}], "decryption": "none"},
    "streamSettings": {"network": "raw", "security": "reality",
      "realitySettings": {"target": "$COVER", "serverNames": ["cover.test"], "privateKey": "$XPRIV", "shortIds": ["$XSID"]}}
  }],
  "outbounds": [{"protocol": "freedom"}]
}
EOF
	cat >"$WORK/xray-client.json" <<EOF
{
  "log": {"loglevel": "${BENCH_XRAY_LOGLEVEL:-warning}", "access": "none"},
  "inbounds": [{"listen": "127.0.0.1", "port": ${P[5]}, "protocol": "socks", "settings": {"auth": "noauth", "udp": false}}],
  "outbounds": [{
    "protocol": "vless",
    "settings": {"vnext": [{"address": "127.0.0.1", "port": ${P[4]},
      "users": [{"id": "$XUUID", "encryption": "none", "flow": "xtls-rprx-vision"}]}]},
    "streamSettings": {"network": "raw", "security": "reality",
      "realitySettings": {"serverName": "cover.test", "fingerprint": "chrome", "password": "$XPUB", "shortId": "$XSID"}}
  }]
}
EOF
	xver=$("$XRAY" version 2>/dev/null | head -1 || true)
	entries+=("{\"name\": \"xray\", \"desc\": $(q "${xver:-xray-core}, VLESS+REALITY+Vision, SOCKS inbound"), \"socks\": $(q "$XSOCKS"),
  \"procs\": [{\"role\": \"server\", \"argv\": [$(q "$XRAY"), \"run\", \"-c\", $(q "$WORK/xray-server.json")], \"ready\": $(q "$XSRV")},
            {\"role\": \"client\", \"argv\": [$(q "$XRAY"), \"run\", \"-c\", $(q "$WORK/xray-client.json")], \"ready\": $(q "$XSOCKS")}]}")
fi

# Burrow's systems share one server data directory (the load tool runs one
# system at a time): "burrow" is the link as `server init` prints it (plain
# streams as mux sessions of an open Vision connection, TLS streams on a
# Vision connection each), "burrow-vision" the same link with --no-mux (every
# stream its own connection, as Xray), "burrow-xhttp" the XHTTP transport
# (rotation off: budget=0; with the default 12 KiB budget it measures the
# REALITY handshake rate instead, see bench/rotation_test.go).
if any_burrow; then
	say "burrow server init"
	if timeout 60 "$BURROW" server init --data "$WORK/burrow-data" --listen "$BSRV" --cover "$COVER" --sni cover.test \
		--public-addr 127.0.0.1 --allow-private-egress >"$WORK/burrow-init.log" 2>&1 &&
		LINK=$(grep -m1 '^vless://' "$WORK/burrow-init.log") &&
		XLINK=$(timeout 60 "$BURROW" user show owner --data "$WORK/burrow-data" --transport xhttp 2>&1 | grep -m1 '^vless://'); then
		XLINK=$(printf '%s' "$XLINK" | sed 's/&budget=[0-9]*//')
		bsys() { # name, description, link, extra client flag
			local extra=""
			[[ -n $4 ]] && extra=", $(q "$4")"
			entries+=("{\"name\": \"$1\", \"desc\": $(q "$2"), \"socks\": $(q "$BSOCKS"),
  \"procs\": [{\"role\": \"server\", \"argv\": [$(q "$BURROW"), \"server\", \"run\", \"--data\", $(q "$WORK/burrow-data")], \"ready\": $(q "$BSRV")},
            {\"role\": \"client\", \"argv\": [$(q "$BURROW"), \"connect\", $(q "$3"), \"--socks\", $(q "$BSOCKS"), \"--http\", \"\"$extra], \"ready\": $(q "$BSOCKS")}]}")
		}
		has burrow && bsys burrow "burrow server run + burrow connect, default link (REALITY+VLESS+Vision over TCP; plain streams inside mux), SOCKS5" "$LINK" ""
		has burrow-vision && bsys burrow-vision "the same with --no-mux: a Vision connection per stream" "$LINK" "--no-mux"
		has burrow-xhttp && bsys burrow-xhttp "burrow over XHTTP (user show --transport xhttp, rotation off), SOCKS5" "$XLINK" ""
	else
		say "burrow server init failed; leaving burrow out:"
		tail -5 "$WORK/burrow-init.log" >&2
		drop_burrow
	fi
fi

if ((${#entries[@]} == 0)); then
	say "nothing to measure (BENCH_SYSTEMS=$BENCH_SYSTEMS)"
	exit 1
fi
{
	printf '{"systems": [\n'
	for i in "${!entries[@]}"; do
		((i > 0)) && printf ',\n'
		printf '%s' "${entries[$i]}"
	done
	printf '\n]}\n'
} >"$WORK/systems.json"

mkdir -p "$WORK/logs"
say "measuring:$(printf ' %s' $BENCH_SYSTEMS); $BENCH_REPS rep(s), $BENCH_BYTES bytes per throughput test"
timeout -k 30 "$BENCH_TIMEOUT" "$LT" bench -systems "$WORK/systems.json" -plain "$SINK" -tls "$SINKTLS" \
	-bytes "$BENCH_BYTES" -streams "$BENCH_STREAMS" -reps "$BENCH_REPS" -ttfb "$BENCH_TTFB_CONNS" \
	-echo "$BENCH_ECHO" -idle "$BENCH_IDLE_CONNS" -idle-wait "$BENCH_IDLE_WAIT" -tests "$BENCH_TESTS" \
	-json "$BENCH_OUT" -logs "$WORK/logs" -clk-tck "$(getconf CLK_TCK)" -sink-pid "$SINKPID" &
PIDS+=($!)
rc=0
wait "${PIDS[-1]}" || rc=$?
say "done in $(($(date +%s) - T0)) s (exit $rc)"
exit "$rc"
