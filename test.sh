#!/usr/bin/env bash
# Burrow's whole test suite: formatting, vet, staticcheck, unit and end-to-end tests with
# the race detector, short fuzzing of every parser of untrusted bytes, and the
# Xray-core interop tests. Run from the repository root: ./test.sh
#   FUZZTIME=5s  how long each fuzz target runs (0 skips fuzzing)
#   FUZZMINIMIZETIME=100x  how much of that window one new input may spend being
#       minimized (Go's default, 60s, lets one large input eat the whole window)
#   FUZZMINEXECS=1000  executions each target must reach in its window
#   SKIP_INTEROP=1  skip the Xray-core interop module (it builds Xray-core)
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"
# -mod=readonly: go.mod and go.sum are committed as the build needs them;
# drift is an error here, not something CI rewrites.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
FUZZTIME="${FUZZTIME:-5s}"
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-100x}"
FUZZMINEXECS="${FUZZMINEXECS:-1000}"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi

step "go vet"
go vet ./...

step "staticcheck"
# Pinned: .ci/run installs this version from the module proxy. Without it the
# suite fails and says how to install it; it is not skipped.
STATICCHECK_VERSION=0.8.2
staticcheck="$(go env GOPATH)/bin/staticcheck"
if ! have=$("$staticcheck" -version 2>/dev/null) || [[ $have != *"($STATICCHECK_VERSION)"* ]]; then
  echo "staticcheck $STATICCHECK_VERSION is not installed at $staticcheck${have:+ (found: $have)}; install it with:"
  echo "  go install honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION"
  exit 1
fi
"$staticcheck" ./...
if [ "${SKIP_INTEROP:-0}" != "1" ] && [ -f interop/go.mod ]; then
  (cd interop && "$staticcheck" ./...)
fi

step "cross-compile every release platform"
# Each other OS is vetted once, tests included (windows, darwin, freebsd); each
# release target builds the binary. e2e/ and bench/ are Linux-only tools.
# release.sh builds the same list.
for os in windows darwin freebsd; do
  echo "-- go vet $os/amd64"
  CGO_ENABLED=0 GOOS=$os GOARCH=amd64 go vet ./cmd/... ./internal/... ./tools/...
done
for t in linux/amd64 linux/arm64 linux/arm linux/mipsle windows/amd64 windows/arm64 darwin/amd64 darwin/arm64 freebsd/amd64; do
  echo "-- go build $t"
  CGO_ENABLED=0 GOOS=${t%/*} GOARCH=${t#*/} GOARM=7 GOMIPS=softfloat go build -o /dev/null ./cmd/burrow
done

# failure_summary LOG: what failed in a go test log, short, so that the tail
# of a long log (all CI keeps) still says which test failed or hung; a
# timeout's goroutine dump can run to thousands of lines after its name.
failure_summary() {
  echo
  echo "== what failed (summary of the log above)"
  grep -E '^(FAIL|ok)[[:space:]]' "$1" | grep '^FAIL' || true
  grep -A8 -E '^panic: test timed out' "$1" | head -40 || true
  grep -B1 -A12 -E '^[[:space:]]*--- FAIL' "$1" | head -120 || true
}

# gotest ARGS...: go test ARGS, and on failure the summary after its log.
gotest() {
  local out
  out=$(mktemp)
  if ! go test "$@" 2>&1 | tee "$out"; then
    failure_summary "$out"
    rm -f "$out"
    exit 1
  fi
  rm -f "$out"
}

step "go test -race"
gotest -race -count=1 -timeout 15m ./...

step "censor lab (fails if a Burrow cell not marked expected-fail is caught, or a baseline is not; the cells issue 14 lists as known failing are reported apart)"
go run ./cmd/burrow lab --known-failing
# The lab's table tests (loopback, and the netns mode as root) judge timing-shaped
# traffic, so they skip under -race above and run here without it.
gotest -count=1 -timeout 30m -run 'Lab' ./internal/censorlab/tunnels/ ./e2e/

if [ "$FUZZTIME" != "0" ]; then
  step "fuzz (each target $FUZZTIME, at least $FUZZMINEXECS executions)"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  slow=""
  # The fuzzer's last status line: "fuzz: elapsed: 5s, execs: 12345 (2469/sec), ...".
  corpus_files() { if [ -d "$1" ]; then ls "$1" | wc -l; else echo 0; fi; }
  execs_in_log() { sed -n 's/^fuzz: elapsed: .*, execs: \([0-9]*\) .*/\1/p' "$log" | tail -n 1; }
  for pkg in $(go list ./...); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      fuzz() { go test -run='^$' -fuzz="^$t\$" -fuzztime="$1" -fuzzminimizetime="$FUZZMINIMIZETIME" "$pkg" >"$log" 2>&1; }
      # counted N runs the target for N executions and sets execs. A count has no
      # deadline, and -fuzztime=Nx passes only after N executions, status line or not.
      counted() { fuzz "${1}x" || { cat "$log"; exit 1; }; execs=$(execs_in_log); execs=${execs:-$1}; }
      report() { printf '%10s execs  %s %s\n' "${execs:-?}" "${pkg#github.com/burrow-vpn/burrow/}" "$t"; }
      corpus="$dir/testdata/fuzz/$t"
      before=$(corpus_files "$corpus")
      if fuzz "$FUZZTIME"; then
        execs=$(execs_in_log)
      else
        # Go 1.26's fuzz coordinator can fail a time-bounded run with a bare "context
        # deadline exceeded" when -fuzztime runs out while a worker is still busy (a race
        # in the coordinator, go.dev/issue/75804, wider on a loaded machine). That run
        # found nothing: a real failure names its input and writes it under testdata/fuzz.
        # It is run again with a count instead of a clock (as many executions as it had
        # made), which never takes that path. Anything else fails at once.
        after=$(corpus_files "$corpus")
        if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input' "$log" && [ "$after" = "$before" ]; then
          made=$(execs_in_log)
          again=$(( ${made:-0} > FUZZMINEXECS ? ${made:-0} : FUZZMINEXECS ))
          echo "   (fuzzer deadline race after ${made:-?} executions, no failing input: running $t again for $again executions)"
          counted "$again"
        else
          cat "$log"; exit 1
        fi
      fi
      report
      # On a machine too busy for the floor in FUZZTIME, the window stretches:
      # the target runs again until it has made FUZZMINEXECS executions.
      if [ "${execs:-0}" -lt "$FUZZMINEXECS" ]; then
        echo "   (busy machine: running $t again for $FUZZMINEXECS executions)"
        counted "$FUZZMINEXECS"
        report
      fi
      if [ "${execs:-0}" -lt "$FUZZMINEXECS" ]; then slow="$slow ${pkg#github.com/burrow-vpn/burrow/}.$t"; fi
    done
  done
  if [ -n "$slow" ]; then
    echo "fuzz targets below $FUZZMINEXECS executions in $FUZZTIME:$slow"; exit 1
  fi
fi

if [ "${SKIP_INTEROP:-0}" != "1" ] && [ -f interop/go.mod ]; then
  step "interop with Xray-core"
  (cd interop && INTEROP_REQUIRE_BURROW=1 INTEROP_REQUIRE_XUDP=1 gotest -count=1 -timeout 20m ./...)
fi

step "all tests passed"
