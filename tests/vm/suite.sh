#!/bin/bash
# The cgroup-v2 suite: builds picolet and the tests/vm_*.rs test binaries on the host, boots the
# cached Debian guest (build-systemd-image.sh: systemd, runc, CNI plugins, iptables) under qemu
# TCG, and runs every binary inside as root with --ignored (those tests are #[ignore]d on the
# host, whose cgroup v2 hierarchy has no controllers).
#   usage: sudo tests/vm/suite.sh [--arch x86_64|aarch64] [--test vm_cgroup ...] [-- TEST-BINARY-ARGS...]
#          (e.g. `-- oom` runs only the tests whose name contains "oom")
#   --arch aarch64: the same tests, cross-built for aarch64-unknown-linux-gnu, in the arm64 guest
#          (build-arm64-image.sh; qemu -M virt -cpu cortex-a72) with arm64 test images.
#   env:   VM_CACHE (default /var/cache/picolet-vm/<arch>), VM_MEMORY (MiB, default 1536),
#          TIMEOUT (s, default 2400), VMTEST_LOG (default <target>/vm/suite.log)
# Exit status: the number of failed test binaries (the guest's), 99 when the guest printed no
# result line (boot failure, timeout). The guest's output is in <target>/vm/suite[-aarch64]-guest.log.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, qemu)" >&2; exit 2; }
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
TIMEOUT=${TIMEOUT:-2400}

tests=(); pass=(); ARCH=x86_64
while (($#)); do
  case $1 in
    --arch) ARCH=$2; shift 2 ;;
    --test) tests+=("$2"); shift 2 ;;
    --) shift; pass=("$@"); break ;;
    *) echo "unknown argument $1 (usage: suite.sh [--test NAME ...] [-- ARGS])" >&2; exit 2 ;;
  esac
done
if [ ${#tests[@]} -eq 0 ]; then
  for f in tests/vm_*.rs; do [ -f "$f" ] && tests+=("$(basename "$f" .rs)"); done
fi
[ ${#tests[@]} -gt 0 ] || { echo "no tests/vm_*.rs test files" >&2; exit 2; }
case $ARCH in x86_64) sfx= ;; aarch64) sfx=-aarch64 ;; *) echo "--arch x86_64|aarch64" >&2; exit 2 ;; esac
LOG=${VMTEST_LOG:-$TARGET/vm/suite$sfx.log}; GLOG=$TARGET/vm/suite$sfx-guest.log
mkdir -p "$(dirname "$LOG")"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
if [ "$ARCH" = aarch64 ]; then
  command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
  command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
fi
command -v jq >/dev/null || need+=(jq)
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

t0=$SECONDS
args=(); for t in "${tests[@]}"; do args+=(--test "$t"); done
if [ "$ARCH" = x86_64 ]; then
  IMG=$("$HERE/build-systemd-image.sh" "${VM_CACHE:-/var/cache/picolet-vm/x86_64}" | tail -1)
  IMAGES=$TARGET/test-images
  bash tests/images/build.sh "$IMAGES"
  cargo build -q
  BIN=$TARGET/debug/picolet
  QEMU=(qemu-system-x86_64 -M q35 -cpu max); CONSOLE=ttyS0
else
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
  IMG=$("$HERE/build-arm64-image.sh" "${VM_CACHE:-/var/cache/picolet-vm/aarch64}" | tail -1)
  # The containers' busybox must be arm64 too: the one from the guest's own .deb.
  IMAGES=$TARGET/test-images-arm64
  bb=$(mktemp -d); dpkg -x "$(ls "$IMG"/../debs/busybox-static_*_arm64.deb | tail -1)" "$bb"
  BUSYBOX=$bb/bin/busybox IMAGE_ARCH=arm64 bash tests/images/build.sh "$IMAGES"; rm -rf "$bb"
  args+=(--target aarch64-unknown-linux-gnu)
  cargo build -q --target aarch64-unknown-linux-gnu
  BIN=$TARGET/aarch64-unknown-linux-gnu/debug/picolet
  QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a72); CONSOLE=ttyAMA0
fi
mapfile -t bins < <(cargo test -q --no-run --message-format=json "${args[@]}" |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test) | .executable')
[ ${#bins[@]} -eq ${#tests[@]} ] || { echo "expected ${#tests[@]} test binaries, cargo gave ${#bins[@]}" >&2; exit 2; }
echo "image, test images and ${#bins[@]} test binaries ready after $((SECONDS - t0)) s"

SHARE=$(mktemp -d /tmp/picolet-vmsuite.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
mkdir -p "$SHARE/bin" "$SHARE/images"
cp "$BIN" "$SHARE/picolet"
cp "$IMAGES"/*.tar "$SHARE/images/"
# cargo lists the executables in its own order: name each by its file (vm_network-<hash>).
for b in "${bins[@]}"; do n=$(basename "$b"); cp "$b" "$SHARE/bin/${n%-*}"; done
printf '%s\n' "${pass[@]+"${pass[@]}"}" > "$SHARE/args"
install -m 0755 "$HERE/guest/suite.sh" "$SHARE/run-in-vm.sh"

t1=$EPOCHREALTIME
set +e
timeout "$TIMEOUT" "${QEMU[@]}" -accel tcg,thread=multi,tb-size=256 -smp 2 \
  -m "${VM_MEMORY:-1536}" -nographic -no-reboot -nic none -snapshot \
  -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
  -append "console=$CONSOLE root=/dev/vda rw panic=-1 loglevel=4 systemd.log_color=0" \
  -drive file="$IMG/disk.img",format=raw,if=virtio \
  -virtfs local,path="$SHARE",mount_tag=share,security_model=none,id=share </dev/null 2>&1 |
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '[%7.2f] %s\n' "$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" \
      "$(printf '%s' "$line" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g')"
  done > "$LOG"
qrc=${PIPESTATUS[0]}
set -e
cp "$SHARE/guest.log" "$GLOG" 2>/dev/null || true
total=$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
grep -E '^\[ *[0-9.]+\] (VMSUITE|test |VMTEST-|test result)' "$LOG" | sed 's/^\[ *[0-9.]*\] //' || true
rc=$(sed -n 's/.*VMTEST-RESULT rc=\([0-9]*\).*/\1/p' "$LOG" | tail -1)
echo "qemu exit $qrc, VM ${total}s, whole run $((SECONDS - t0))s, guest rc ${rc:-none}"
echo "console $LOG, guest output $GLOG"
exit "${rc:-99}"
