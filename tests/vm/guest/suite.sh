#!/bin/bash
# Runs in the guest (vmtest.service, as root): each test binary from the share with --ignored,
# one test at a time, picolet and the test images copied to the guest's disk first.
# Prints "VMSUITE <binary> ok|FAILED (<s> s)"; exit status = failed binaries.
set -u
S=/mnt/share; W=/opt/vmsuite
mkdir -p "$W/images"
cp "$S/picolet" "$W/picolet"; cp "$S"/images/*.tar "$W/images/"
mapfile -t extra < <(grep -v '^$' "$S/args" 2>/dev/null)
echo "VMSUITE guest: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB," \
  "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers), runc $(runc --version | awk 'NR==1 {print $3}')"
failed=0
for t in "$S"/bin/*; do
  name=$(basename "$t"); start=$SECONDS
  echo "VMSUITE $name start"
  if (cd /tmp && PICOLET_BIN=$W/picolet PICOLET_TEST_IMAGES=$W/images RUST_BACKTRACE=1 \
        "$t" --ignored --test-threads=1 "${extra[@]+"${extra[@]}"}"); then
    echo "VMSUITE $name ok ($((SECONDS - start)) s)"
  else
    echo "VMSUITE $name FAILED ($((SECONDS - start)) s)"; failed=$((failed + 1))
  fi
done
exit "$failed"
