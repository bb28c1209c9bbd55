#!/bin/bash
# Boots the systemd guest (build-systemd-image.sh) under qemu TCG and checks picolet.service there:
# install, Type=notify start, static pod Running, restart / SIGKILL / stop+start without touching
# the container (KillMode=process), journal priorities, Delegate=yes cgroup, watchdog.
#   usage: tests/vm/systemd-test.sh PICOLET_BINARY
#   env:   VM_CACHE   image cache dir (default /var/cache/picolet-vm/x86_64)
#          VMTEST_UNIT_TYPE=simple   adds a Type=simple, NotifyAccess=none, WatchdogSec=0 drop-in, for a binary
#                     that does not send READY=1 yet (notify-only checks then print "skip")
#          VMTEST_XFAIL="name ..."  known-failing checks: printed as "xfail", not counted
#          VMTEST_LOG console log (default <target>/vm/systemd-test.log), TIMEOUT (s, default 900)
# Exit status: the guest's (number of failed checks; 50+ when it gave up early), 99 when the
# guest printed no VMTEST-RESULT line (boot failure, timeout).
set -euo pipefail
BIN=$(readlink -f "${1:?usage: systemd-test.sh PICOLET_BINARY}")
[ -x "$BIN" ] || { echo "not executable: $BIN" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
LOG=${VMTEST_LOG:-$TARGET/vm/systemd-test.log}; TIMEOUT=${TIMEOUT:-900}
mkdir -p "$(dirname "$LOG")"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

t0=$SECONDS
IMG=$("$HERE/build-systemd-image.sh" "${VM_CACHE:-/var/cache/picolet-vm/x86_64}" | tail -1)
bash "$REPO/tests/images/build.sh" "$TARGET/test-images"
echo "image $IMG and test images ready after $((SECONDS - t0)) s"

SHARE=$(mktemp -d /tmp/picolet-vmshare.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
cp "$BIN" "$SHARE/picolet"
cp "$TARGET/test-images/busybox.tar" "$SHARE/"
for f in picolet.service picolet.default config.yaml; do
  if [ -f "$REPO/systemd/$f" ]; then cp "$REPO/systemd/$f" "$SHARE/"; else
    echo "WARNING: systemd/$f missing in this tree: using a minimal stand-in" >&2
    case $f in
      picolet.service) printf '%s\n' '[Unit]' 'Description=picolet (stand-in unit)' '[Service]' 'Type=notify' \
        'ExecStart=/usr/local/bin/picolet --config /etc/picolet/config.yaml' 'Delegate=yes' \
        'KillMode=process' 'Restart=always' 'RestartSec=2' '[Install]' 'WantedBy=multi-user.target' > "$SHARE/$f" ;;
      picolet.default) echo 'PICOLET_ARGS=""' > "$SHARE/$f" ;;
      config.yaml) printf '%s\n' 'apiVersion: kubelet.config.k8s.io/v1beta1' 'kind: KubeletConfiguration' \
        'staticPodPath: /etc/kubernetes/manifests' > "$SHARE/$f" ;;
    esac
  fi
done
if [ "${VMTEST_UNIT_TYPE:-notify}" = simple ]; then
  mkdir -p "$SHARE/dropin"
  printf '[Service]\nType=simple\nNotifyAccess=none\nWatchdogSec=0\n' > "$SHARE/dropin/50-vmtest-type-simple.conf"
  echo simple > "$SHARE/mode"
fi
[ -n "${VMTEST_XFAIL:-}" ] && echo "$VMTEST_XFAIL" > "$SHARE/xfail"
install -m 0755 "$HERE/guest/picolet-systemd.sh" "$SHARE/run-in-vm.sh"

ACC=(-accel tcg,thread=multi,tb-size=256)
t1=$EPOCHREALTIME
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -M q35 -cpu max "${ACC[@]}" -smp 2 -m 1024 \
  -nographic -no-reboot -nic none -snapshot \
  -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
  -append "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4 systemd.log_color=0" \
  -drive file="$IMG/disk.img",format=raw,if=virtio \
  -virtfs local,path="$SHARE",mount_tag=share,security_model=none,id=share </dev/null 2>&1 |
  while IFS= read -r line; do
    line=${line%$'\r'}
    line=$(printf '%s' "$line" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g')
    printf '[%7.2f] %s\n' "$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$line"
  done > "$LOG"
qrc=${PIPESTATUS[0]}
set -e
total=$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
grep -E 'CHECK |VMTEST-|giving up|WARNING' "$LOG" || true
rc=$(sed -n 's/.*VMTEST-RESULT rc=\([0-9]*\).*/\1/p' "$LOG" | tail -1)
echo "qemu exit $qrc, VM ${total}s, whole run $((SECONDS - t0))s, guest rc ${rc:-none}, console log $LOG"
exit "${rc:-99}"
