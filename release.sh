#!/usr/bin/env bash
# Build Burrow's release into dist/: one archive per platform
# (burrow_VERSION_OS_ARCH.tar.gz, .zip for Windows), .deb packages for
# amd64 and arm64, and SHA256SUMS. Run from a clean checkout of the commit
# to release:   ./release.sh 1.2.0
# Reproducible: every input is the commit (source, its time as every
# timestamp), so two runs from the same commit give the same SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"

VERSION="${1:-}"
VERSION="${VERSION#v}"
if ! [[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+~][0-9A-Za-z.~+-]+)?$ ]]; then
  echo "usage: ./release.sh VERSION   (e.g. 1.2.0 or 1.3.0-rc1)" >&2
  exit 2
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${BURROW_RELEASE_DIRTY:-0}" != 1 ]; then
  echo "release.sh: the work tree has uncommitted changes; a release is built from a commit (BURROW_RELEASE_DIRTY=1 to build anyway)" >&2
  exit 1
fi
COMMIT=$(git rev-parse HEAD)
COMMIT_TIME=$(git log -1 --format=%ct HEAD)
BUILT=$(date -u -d "@$COMMIT_TIME" +%Y-%m-%dT%H:%M:%SZ)

# Modules come as go.sum pins them; nothing about this machine goes in.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false" SOURCE_DATE_EPOCH="$COMMIT_TIME"
LDFLAGS="-s -w -buildid= -X main.releaseVersion=$VERSION -X main.releaseCommit=$COMMIT -X main.releaseBuilt=$BUILT"

# OS/ARCH[/variant]: variant is GOARM for arm, GOMIPS for mipsle.
TARGETS=(
  linux/amd64 linux/arm64 linux/arm/7 linux/mipsle/softfloat
  windows/amd64 windows/arm64
  darwin/amd64 darwin/arm64
  freebsd/amd64
)

rm -rf dist
mkdir -p dist/build
go build -o dist/build/pack ./tools/pack

for t in "${TARGETS[@]}"; do
  IFS=/ read -r os arch variant <<<"$t"
  name="burrow_${VERSION}_${os}_${arch}"
  exe=burrow
  [ "$os" = windows ] && exe=burrow.exe
  mkdir -p "dist/build/$name"
  echo "build $name"
  vars=(GOOS="$os" GOARCH="$arch")
  case $arch in
    arm) vars+=(GOARM="$variant") ;;
    mipsle) vars+=(GOMIPS="$variant") ;;
  esac
  env "${vars[@]}" go build -ldflags "$LDFLAGS" -o "dist/build/$name/$exe" ./cmd/burrow
  ext=tar.gz
  [ "$os" = windows ] && ext=zip
  dist/build/pack archive -mtime "$COMMIT_TIME" -dir "$name" -o "dist/$name.$ext" \
    "dist/build/$name/$exe" README.md
done

# The packaged unit is the one `burrow server install` writes, from the
# binary itself (the host's build, for its --print).
host=dist/build/host-burrow
go build -ldflags "$LDFLAGS" -o "$host" ./cmd/burrow
"$host" server install --print --data /var/lib/burrow --binary /usr/bin/burrow >dist/build/burrow.service
for arch in amd64 arm64; do
  echo "deb $arch"
  dist/build/pack deb -mtime "$COMMIT_TIME" -version "$VERSION" -arch "$arch" \
    -binary "dist/build/burrow_${VERSION}_linux_${arch}/burrow" -unit dist/build/burrow.service \
    -o "dist/burrow_${VERSION}_${arch}.deb"
done

rm -rf dist/build
(cd dist && LC_ALL=C sha256sum -- *.tar.gz *.zip *.deb | LC_ALL=C sort -k2 >SHA256SUMS)
echo "dist/ for burrow $VERSION ($COMMIT):"
(cd dist && ls -l --time-style=+ -- * | awk '{print $5, $NF}')
