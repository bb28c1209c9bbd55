#!/bin/sh
# Runs in the guest as root (x86_64: from vmtest.service; aarch64: from the busybox init), so
# POSIX sh: each test binary from the share with --ignored, one test at a time, picolet and the
# test images copied to the guest's disk first. Prints "VMSUITE <binary> ok|FAILED (<s> s)";
# exit status = failed binaries.
S=/mnt/share; W=/opt/vmsuite
mkdir -p "$W/images"
cp "$S/picolet" "$W/picolet"; cp "$S"/images/*.tar "$W/images/"
extra=$(cat "$S/args" 2>/dev/null)
# The aarch64 guest has no systemd (busybox PID 1): the test of picolet in its own systemd unit
# cannot run there; say so instead of passing it.
if [ ! -d /run/systemd/system ]; then
  extra="$extra --skip own_unit_cgroup_with_supervisor_leaf"
  echo "VMSUITE no systemd in this guest: skipping own_unit_cgroup_with_supervisor_leaf"
fi
echo "VMSUITE guest: $(uname -m), kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB," \
  "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers), runc $(runc --version | awk 'NR==1 {print $3}')"
failed=0
for t in "$S"/bin/*; do
  name=$(basename "$t"); start=$(cut -d. -f1 /proc/uptime)
  echo "VMSUITE $name start"
  # $extra unquoted on purpose: one word per line of the args file (test name filters).
  if (cd /tmp && PICOLET_BIN=$W/picolet PICOLET_TEST_IMAGES=$W/images RUST_BACKTRACE=1 \
        "$t" --ignored --test-threads=1 $extra); then
    echo "VMSUITE $name ok ($(( $(cut -d. -f1 /proc/uptime) - start )) s)"
  else
    echo "VMSUITE $name FAILED ($(( $(cut -d. -f1 /proc/uptime) - start )) s)"; failed=$((failed + 1))
  fi
done
exit "$failed"
