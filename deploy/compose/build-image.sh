#!/usr/bin/env bash
# Builds the `chronik` image without any registry: FROM scratch, with the release binary, the
# shared libraries it links (as `ldd` lists them) and the /etc files glibc's name resolution
# reads, so compose service names (node1, gateway1, ...) resolve through Docker's DNS.
#
#   deploy/compose/build-image.sh            # cargo build --release, then docker build
#   CHRONIK_BINARY=path/to/chronik-server deploy/compose/build-image.sh   # use a built binary
#   CHRONIK_IMAGE=chronik:dev deploy/compose/build-image.sh               # another tag
#
# It also creates deploy/compose/secrets/jwt.secret (32 random bytes, hex) on first use: the
# HS256 key of the admin API, mounted read-only into every container, never baked into the image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${CHRONIK_IMAGE:-chronik:latest}

if ! docker info >/dev/null 2>&1; then
  echo "build-image.sh: no Docker engine answers \`docker info\`" >&2
  exit 1
fi

bin=${CHRONIK_BINARY:-}
if [ -z "$bin" ]; then
  (cd "$repo" && nice -n 10 cargo build --release --bin chronik-server)
  # Wherever cargo puts it (CARGO_TARGET_DIR, .cargo/config.toml): cargo metadata knows.
  target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  bin="${target:-${CARGO_TARGET_DIR:-$repo/target}}/release/chronik-server"
fi
[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/chronik" "$root/var/lib/chronik" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/chronik-server"
# Debug line tables are kept in the release profile for backtraces; the image does not need them.
strip --strip-debug "$root/usr/local/bin/chronik-server" 2>/dev/null || true

# Every absolute path ldd prints (libraries and the dynamic loader), at the same path, dereferenced.
copy_lib() {
  local lib=$1
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
}
libs=$(ldd "$bin" | grep -o '/[^ ]*' || true)
if [ -z "$libs" ]; then
  echo "build-image.sh: $bin links no shared library (static build)"
fi
libdir=""
for lib in $libs; do
  copy_lib "$lib"
  case "$lib" in */libc.so.*) libdir=$(dirname "$lib") ;; esac
done
# glibc loads these at run time (not in ldd's list) for hosts/DNS lookups; since glibc 2.34
# they are part of libc and these files are small stubs, but older glibc needs them.
if [ -n "$libdir" ]; then
  for extra in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    [ -e "$libdir/$extra" ] && copy_lib "$libdir/$extra"
  done
fi

# Name resolution: /etc/hosts and /etc/resolv.conf are provided by Docker at run time.
printf 'hosts: files dns\nnetworks: files\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/var/lib/chronik:/usr/local/bin/chronik-server\nnobody:x:65534:65534:nobody:/nonexistent:/usr/local/bin/chronik-server\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

cp "$here/Dockerfile" "$ctx/Dockerfile"
revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
docker build -q -t "$image" --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.title=chronik" "$ctx" >/dev/null
# The image this one replaced, if nothing else uses it (each build would otherwise leave ~40 MB).
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "built image $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}'), revision $revision)"
docker run --rm "$image" version

# The admin API's HS256 key, shared by every node of the compose cluster.
secret="$here/secrets/jwt.secret"
if [ ! -s "$secret" ]; then
  mkdir -p "$here/secrets"
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$secret")
  echo "created $secret (the admin API key; mint tokens with: docker exec chronik-node1 chronik-server admin token --role viewer --config /etc/chronik/chronik.toml)"
fi
