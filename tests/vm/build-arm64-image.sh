#!/bin/bash
# Builds the aarch64 guest for tests/vm/suite.sh --arch aarch64 (qemu -M virt -cpu cortex-a72, the
# Raspberry Pi 4's core). debootstrap cannot run an arm64 second stage here (no binfmt_misc), so
# the root filesystem is arm64 Debian packages unpacked with dpkg -x, and PID 1 is a busybox
# script (guest/arm64-init) instead of systemd:
#   OUTDIR/<key>/vmlinuz      Debian's arm64 kernel (the image package linux-image-arm64 names)
#   OUTDIR/<key>/initrd.img   busybox initramfs: loads virtio + ext4, mounts /dev/vda, switch_root
#   OUTDIR/<key>/disk.img     ext4 root (sparse): glibc, busybox, runc, iptables, CNI plugins,
#                             every kernel module, /sbin/vminit
#   OUTDIR/current            symlink to the newest <key>
# usage: build-arm64-image.sh [OUTDIR]     (default /var/cache/picolet-vm/aarch64)
# Cache key: this script, guest/arm64-init and the host's apt candidate versions of the packages.
# Needs root; adds the arm64 architecture to dpkg (foreign packages are only downloaded).
# Last line of stdout: the image directory.
set -euo pipefail
OUT=${1:-/var/cache/picolet-vm/aarch64}
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
need=()
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -q >/dev/null
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

KPKG=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { apt-get update -q >/dev/null; KPKG=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-/{print $2; exit}'); }
KPKG=${KPKG%:arm64}
# runc + its libseccomp; iptables (the nft flavour) + its libraries, for the CNI bridge/portmap
# plugins; glibc and libgcc for the host-built test binaries.
PKGS="$KPKG busybox-static runc libseccomp2 libc6 libgcc-s1 containernetworking-plugins iptables
      libxtables12 libip4tc2 libip6tc2 libnftnl11 libmnl0 libnetfilter-conntrack3 libnfnetlink0"
versions=$(for p in $PKGS; do echo "$p=$(apt-cache policy "$p:arm64" | awk '/Candidate:/{print $2}')"; done)
KEY=$( { cat "$0" "$HERE/guest/arm64-init"; echo "$versions"; } | sha256sum | cut -c1-16)
DIR=$OUT/$KEY
if [ -f "$DIR/.complete" ]; then ln -sfn "$KEY" "$OUT/current"; echo "$DIR"; exit 0; fi
mkdir -p "$OUT/debs"
exec 9>"$OUT/.lock"; flock 9
if [ -f "$DIR/.complete" ]; then ln -sfn "$KEY" "$OUT/current"; echo "$DIR"; exit 0; fi
t0=$SECONDS
W=$DIR.tmp; R=$W/rootfs
rm -rf "$W"; mkdir -p "$W"
echo "building arm64 guest image $KEY in $DIR" >&2

(cd "$OUT/debs" && for p in $PKGS; do
   ls "${p}"_*_arm64.deb >/dev/null 2>&1 || apt-get download "$p:arm64" 2>&1 | grep -v 'unsandboxed' || true
 done)
mkdir -p "$R"
for p in $PKGS; do dpkg -x "$(ls "$OUT/debs/${p}"_*_arm64.deb | tail -1)" "$W/x"; done
# Merged /usr, as Debian: /bin /sbin /lib point into /usr.
mkdir -p "$R"/usr/{bin,sbin,lib} "$R"/{etc,proc,sys,dev,run,tmp,mnt/share,root,var/lib,opt}
for d in bin sbin lib; do ln -s "usr/$d" "$R/$d"; done
cp -a "$W/x/usr/." "$R/usr/"
for d in bin sbin lib; do [ -d "$W/x/$d" ] && cp -a "$W/x/$d/." "$R/usr/$d/"; done
cp -a "$W/x/etc/." "$R/etc/" 2>/dev/null || true
KVER=$(ls "$R/usr/lib/modules" | head -1)
mv "$R/boot" "$W/boot" 2>/dev/null || cp -a "$W/x/boot" "$W/boot"
cp "$W/boot/vmlinuz-$KVER" "$W/vmlinuz"
rm -rf "$W/x" "$R/usr/share/doc" "$R/usr/share/man"
# busybox provides the shell and the userland (ip, mount, modprobe, ...); Debian's binaries win.
for a in $(/bin/busybox --list-full); do [ -e "$R/$a" ] || ln -s /usr/bin/busybox "$R/$a"; done
# What update-alternatives would have made.
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf xtables-nft-multi "$R/usr/sbin/$t"
done
/bin/busybox depmod -b "$R" "$KVER"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
printf '127.0.0.1 localhost\n127.0.1.1 vmtest\n' > "$R/etc/hosts"
printf 'nameserver 127.0.0.1\n' > "$R/etc/resolv.conf"
echo vmtest > "$R/etc/hostname"
install -m 0755 "$HERE/guest/arm64-init" "$R/sbin/vminit"

# initramfs: just enough to mount the root disk
I=$W/initramfs; MD=$R/usr/lib/modules/$KVER
mkdir -p "$I"/{bin,dev,proc,sys,newroot,lib/modules/$KVER}
cp "$R/usr/bin/busybox" "$I/bin/busybox"
mods=""
add() { local line k; line=$(grep -E "/$1\.ko(\.[gx]z)?:" "$MD/modules.dep" | head -1) || true
        [ -z "$line" ] && return 0
        for k in ${line//:/}; do case " $mods " in *" $k "*) ;; *) mods="$mods $k";; esac; done; }
for m in virtio_mmio virtio_pci virtio_blk ext4 crc32c_generic; do add "$m"; done
for k in $mods; do mkdir -p "$I/lib/modules/$KVER/$(dirname "$k")"; cp "$MD/$k" "$I/lib/modules/$KVER/$k"; done
cp "$MD"/modules.builtin* "$MD/modules.order" "$I/lib/modules/$KVER/"
/bin/busybox depmod -b "$I" "$KVER"
cat > "$I/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in virtio_mmio virtio_pci virtio_blk crc32c_generic ext4; do modprobe $m 2>/dev/null; done
for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; ls /dev; sleep 2; poweroff -f; }
umount /proc /sys /dev
exec switch_root /newroot /sbin/vminit
EOF
chmod 0755 "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 > "$W/initrd.img")
mkfs.ext4 -q -L root -d "$R" -F "$W/disk.img" 3G
echo "$KVER" > "$W/kernel-version"
rm -rf "$R" "$I" "$W/boot"
touch "$W/.complete"
rm -rf "$DIR"; mv "$W" "$DIR"
ln -sfn "$KEY" "$OUT/current"
for d in "$OUT"/*/; do d=${d%/}; [ -L "$d" ] && continue
  if [ "$d" != "$DIR" ] && [ "$d" != "$OUT/debs" ] && { [ -f "$d/.complete" ] || [[ $d == *.tmp ]]; }; then rm -rf "$d"; fi
done
echo "  arm64 image ready in $((SECONDS - t0)) s: kernel $KVER, disk $(du -h "$DIR/disk.img" | cut -f1) used" >&2
echo "$DIR"
