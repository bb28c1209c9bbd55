#!/bin/bash
# Builds a bootable Debian bookworm guest with systemd as PID 1, for qemu (TCG):
#   OUTDIR/<key>/vmlinuz      the Debian kernel (linux-image-amd64's image package)
#   OUTDIR/<key>/initrd.img   a tiny busybox initramfs: loads virtio_pci, virtio_blk, ext4,
#                             mounts /dev/vda and switch_roots to /sbin/init (systemd)
#   OUTDIR/<key>/disk.img     ext4 root filesystem (2 GiB, sparse), made with mkfs.ext4 -d
#   OUTDIR/current            symlink to the newest <key>
# The guest has a vmtest.service that mounts the virtio-9p share (tag "share") at /mnt/share,
# runs /mnt/share/run-in-vm.sh, prints "VMTEST-RESULT rc=N" on the console and powers off.
# Nothing test-specific is in the image: tests/vm/systemd-test.sh puts everything in the share
# and boots the disk with -snapshot, so the cached disk is never written.
#
# usage: build-systemd-image.sh [OUTDIR]     (default /var/cache/picolet-vm/x86_64)
# Cache key: this script + the candidate versions of the key packages in the host's apt lists.
# A rerun with the same key prints the directory and does nothing else.
# Needs: root, apt (installs debootstrap e2fsprogs cpio busybox-static when missing).
# Last line of stdout: the image directory.
set -euo pipefail
OUT=${1:-/var/cache/picolet-vm/x86_64}
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot)" >&2; exit 1; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# The mirror the host uses (deb822 sources or a one-line sources.list).
MIRROR=${MIRROR:-$(cat /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null |
  awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit} /^deb / && $2 ~ /debian\/?$/ {print $2; exit}' || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# containernetworking-plugins + iptables: CNI for the pod-network tests (tests/vm/suite.sh);
# e2fsprogs: small filesystems for the disk-pressure tests.
PKGS=systemd,systemd-sysv,udev,kmod,dbus,runc,busybox-static,iproute2,curl,ca-certificates,procps,psmisc,jq,containernetworking-plugins,iptables,e2fsprogs

KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { apt-get update -q >/dev/null; KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); }
versions=$(for p in "$KPKG" systemd runc busybox-static libc6; do
  echo "$p=$(apt-cache policy "$p" | awk '/Candidate:/{print $2}')"; done)
KEY=$( { sha256sum "$SELF" | cut -d' ' -f1; echo "$MIRROR $SUITE $PKGS"; echo "$versions"; } | sha256sum | cut -c1-16)
DIR=$OUT/$KEY
if [ -f "$DIR/.complete" ]; then
  ln -sfn "$KEY" "$OUT/current"
  echo "$DIR"
  exit 0
fi

# One builder at a time per cache (parallel CI jobs): wait, then re-check the cache.
mkdir -p "$OUT/debs"
exec 9>"$OUT/.lock"; flock 9
if [ -f "$DIR/.complete" ]; then ln -sfn "$KEY" "$OUT/current"; echo "$DIR"; exit 0; fi
t0=$SECONDS
rm -rf "$DIR.tmp"; mkdir -p "$DIR.tmp"
W=$DIR.tmp; R=$W/rootfs
log=$W/build.log
echo "building systemd guest image $KEY in $DIR (log $log)" >&2
{ echo "key inputs:"; echo "$MIRROR $SUITE $PKGS"; echo "$versions"; } > "$W/key.txt"

# 1. rootfs. --cache-dir keeps the .debs, so a rebuild after a script change downloads nothing.
debootstrap --variant=minbase --include="$PKGS" --cache-dir="$OUT/debs" \
  "$SUITE" "$R" "$MIRROR" >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
echo "  debootstrap done ($((SECONDS - t0)) s)" >&2

# 2. kernel: unpack the image package (vmlinuz + modules) into the rootfs; no initramfs-tools run.
(cd "$OUT/debs" && { ls "${KPKG}"_*.deb >/dev/null 2>&1 || apt-get download "$KPKG" >>"$log" 2>&1; })
# (not dpkg -x straight into the rootfs: it would replace the merged-/usr /lib symlink)
dpkg -x "$(ls "$OUT/debs/${KPKG}"_*.deb | tail -1)" "$W/kernel"
KVER=$(ls "$W/kernel/lib/modules" | head -1)
mkdir -p "$R/usr/lib/modules" "$R/boot"
mv "$W/kernel/lib/modules/$KVER" "$R/usr/lib/modules/"
cp -a "$W/kernel/boot/." "$R/boot/"
rm -rf "$W/kernel"
chroot "$R" depmod "$KVER"
cp "$R/boot/vmlinuz-$KVER" "$W/vmlinuz"

# 3. guest configuration
echo vmtest > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vmtest\n' > "$R/etc/hosts"
printf '%s\n' 5f1c0d2a9b7e4c3d8a6b1e0f2c4d6e8a > "$R/etc/machine-id"
: > "$R/etc/fstab"
printf 'overlay\n' > "$R/etc/modules-load.d/picolet.conf"
mkdir -p "$R/mnt/share" "$R/etc/systemd/system/multi-user.target.wants"
# No login prompts on the serial line, no waiting for a network.
for u in serial-getty@ttyS0.service getty@tty1.service systemd-networkd-wait-online.service \
         apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  ln -sfn /dev/null "$R/etc/systemd/system/$u"
done
install -d "$R/etc/systemd/system.conf.d"
cat > "$R/etc/systemd/system.conf.d/vmtest.conf" <<'EOF'
[Manager]
# Slow emulated boots: do not give up on units too early.
DefaultTimeoutStartSec=300s
EOF
cat > "$R/usr/local/sbin/vmtest-run" <<'EOF'
#!/bin/bash
# Runs the test script from the 9p share; its output goes to the console and to the share.
exec </dev/null
say() { echo "$*" > /dev/ttyS0; }
say "VMTEST-MARK vmtest.service start uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r) systemd=$(systemctl --version | head -1)"
modprobe virtio_pci 2>/dev/null; modprobe 9pnet_virtio; modprobe 9p
for i in $(seq 50); do
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /mnt/share 2>/dev/null && break
  sleep 0.2
done
rc=98
if [ -x /mnt/share/run-in-vm.sh ]; then
  /mnt/share/run-in-vm.sh 2>&1 | tee /mnt/share/guest.log > /dev/ttyS0
  rc=${PIPESTATUS[0]}
else
  say "VMTEST-MARK no /mnt/share/run-in-vm.sh (9p mount failed?)"
fi
say "VMTEST-RESULT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "$rc" > /mnt/share/vm-rc 2>/dev/null
sync
# -ff: straight to reboot(2). A plain poweroff waits 90 s for the containers that
# KillMode=process leaves behind; the disk is a throw-away snapshot anyway.
systemctl poweroff -ff
EOF
chmod 0755 "$R/usr/local/sbin/vmtest-run"
cat > "$R/etc/systemd/system/vmtest.service" <<'EOF'
[Unit]
Description=picolet VM test runner (script from the 9p share)
After=multi-user.target
[Service]
# exec, not oneshot: the boot job ends at once, so no "A start job is running" spinner
# on the console while the test runs.
Type=exec
ExecStart=/usr/local/sbin/vmtest-run
StandardOutput=journal
[Install]
WantedBy=multi-user.target
EOF
ln -sfn ../vmtest.service "$R/etc/systemd/system/multi-user.target.wants/vmtest.service"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages

# 4. initramfs: busybox + the modules needed to mount the root disk
I=$W/initramfs; MD=$R/lib/modules/$KVER
mkdir -p "$I"/{bin,dev,proc,sys,newroot,lib/modules/$KVER}
cp "$R/bin/busybox" "$I/bin/busybox"
mods=""
add() { local line k; line=$(grep -E "/$1\.ko(\.[gx]z)?:" "$MD/modules.dep" | head -1) || true
        [ -z "$line" ] && return 0   # built in
        for k in ${line//:/}; do case " $mods " in *" $k "*) ;; *) mods="$mods $k";; esac; done; }
for m in virtio_pci virtio_blk ext4 crc32c_generic; do add "$m"; done
for k in $mods; do mkdir -p "$I/lib/modules/$KVER/$(dirname "$k")"; cp "$MD/$k" "$I/lib/modules/$KVER/$k"; done
cp "$MD"/modules.builtin* "$MD/modules.order" "$I/lib/modules/$KVER/"
/bin/busybox depmod -b "$I" "$KVER"
cat > "$I/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_blk crc32c_generic ext4; do modprobe $m; done
for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; ls /dev; sleep 2; poweroff -f; }
umount /proc /sys /dev
exec switch_root /newroot /sbin/init
EOF
chmod 0755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 > "$W/initrd.img")

# 5. root disk, no loop mount needed
mkfs.ext4 -q -L root -d "$R" -F "$W/disk.img" 2G >>"$log" 2>&1
echo "$KVER" > "$W/kernel-version"
rm -rf "$R" "$I"
touch "$W/.complete"
rm -rf "$DIR"; mv "$W" "$DIR"
ln -sfn "$KEY" "$OUT/current"
# Older keys are dead weight (2 GiB sparse each); the .deb cache stays.
for d in "$OUT"/*/; do d=${d%/}; [ -L "$d" ] && continue
  if [ "$d" != "$DIR" ] && [ "$d" != "$OUT/debs" ] && { [ -f "$d/.complete" ] || [[ $d == *.tmp ]]; }; then
    rm -rf "$d"
  fi
done
echo "  image ready in $((SECONDS - t0)) s: kernel $KVER, disk $(du -h "$DIR/disk.img" | cut -f1) used" >&2
echo "$DIR"
