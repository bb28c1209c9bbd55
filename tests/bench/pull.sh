#!/usr/bin/env bash
# Benchmark: picolet's peak RSS pulling a big image (one layer holding
# SIZE_MB of random data, gzip-compressed by umoci, and the same pushed
# zstd-compressed by skopeo) from a local docker-registry, next to pulling the
# small busybox image, and the time it takes. Blobs stream to disk through the
# hasher and the unpacker, so the peak should not grow with the image: the
# growth printed is the big pull's peak minus busybox's (target < 2 MiB).
#   sudo tests/bench/pull.sh [SIZE_MB]      (default 120)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib.sh
need_root
install_deps
size=${1:-120}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q
bin=$target/release/picolet
bash tests/images/build.sh "$target/test-images"

work=$(mktemp -d /tmp/picolet-bench-pull.XXXXXX)
reg=
finish() {
    if [[ -n $reg ]]; then kill "$reg" 2>/dev/null || true; fi
    cleanup_root "$work/root-small"
    cleanup_root "$work/root-big-v1"
    cleanup_root "$work/root-big-zstd"
    cleanup_root "$work/root-big-text"
    rm -rf "$work"
}
trap finish EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/data
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
reg=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
done
printf 'mirrors:\n  "127.0.0.1:%s":\n    endpoint: ["http://127.0.0.1:%s"]\n' "$port" "$port" >"$work/registries.yaml"

skopeo=(skopeo --insecure-policy copy -q --dest-tls-verify=false)
"${skopeo[@]}" "oci-archive:$target/test-images/busybox.tar" "docker://127.0.0.1:$port/bench/small:v1"
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:big"
umoci unpack --image "$layout:big" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/data"
head -c "${size}M" /dev/urandom >"$work/bundle/rootfs/data/blob"
umoci repack --image "$layout:big" "$work/bundle"
rm -rf "$work/bundle"
"${skopeo[@]}" "oci:$layout:big" "docker://127.0.0.1:$port/bench/big:v1"
"${skopeo[@]}" --dest-compress-format zstd "oci:$layout:big" "docker://127.0.0.1:$port/bench/big:zstd"
# Compressible data (base64 text) as zstd: the decoder's window fills up.
umoci new --image "$layout:text"
umoci unpack --image "$layout:text" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/data"
head -c "${size}M" /dev/urandom | base64 >"$work/bundle/rootfs/data/text"
umoci repack --image "$layout:text" "$work/bundle"
rm -rf "$work/bundle"
"${skopeo[@]}" --dest-compress-format zstd "oci:$layout:text" "docker://127.0.0.1:$port/bench/big:text"
rm -rf "$layout"

# Peak RSS (GNU time's %M, the process's own high-water mark, KiB) and wall time of one `images pull`.
measure() {
    /usr/bin/time -f '%M %e' -o "$work/time" "$@" >/dev/null
    read -r kib secs <"$work/time"
}
pull() {
    measure "$bin" images pull "127.0.0.1:$port/bench/$1" --root-dir "$work/$2" --registry-config "$work/registries.yaml"
}
pull small:v1 root-small
small=$kib
awk -v k="$kib" -v s="$secs" 'BEGIN { printf "pull busybox (1 MiB layer):      %.1f MiB peak RSS, %.1f s\n", k / 1024, s }'
for tag in v1 zstd text; do
    pull "big:$tag" "root-big-$tag"
    case $tag in v1) what="random, gzip" ;; zstd) what="random, zstd" ;; text) what="base64 text, zstd" ;; esac
    awk -v k="$kib" -v b="$small" -v s="$secs" -v n="$size" -v c="$what" \
        'BEGIN { printf "pull a %s MiB layer (%s): %.1f MiB peak RSS, growth over busybox %+.2f MiB, %.1f s\n", n, c, k / 1024, (k - b) / 1024, s }'
done
du -sh "$work/root-big-v1/images-store/blobs" | awk '{print "blobs in the store (gzip image): " $1}'
