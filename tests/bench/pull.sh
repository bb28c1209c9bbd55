#!/usr/bin/env bash
# Benchmark: picolet's peak RSS pulling a big image (one layer holding
# SIZE_MB of random data, gzip-compressed by umoci) from a local
# docker-registry, next to pulling the small busybox image, and the time it
# takes. Blobs stream to disk through the hasher, so the peak should not grow
# with the image.
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
    cleanup_root "$work/root-big"
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
rm -rf "$layout"

# Peak RSS (GNU time's %M, the process's own high-water mark) and wall time of one `images pull`.
measure() {
    /usr/bin/time -f '%M %e' -o "$work/time" "$@" >/dev/null
    awk '{printf "%.1f MiB peak RSS, %.1f s", $1 / 1024, $2}' "$work/time"
}
echo "pull busybox (1 MiB layer):        $(measure "$bin" images pull "127.0.0.1:$port/bench/small:v1" --root-dir "$work/root-small" --registry-config "$work/registries.yaml")"
echo "pull a ${size} MiB layer (gzip):    $(measure "$bin" images pull "127.0.0.1:$port/bench/big:v1" --root-dir "$work/root-big" --registry-config "$work/registries.yaml")"
du -sh "$work/root-big/images-store/blobs" | awk '{print "blobs in the store: " $1}'
