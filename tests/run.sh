#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test as
# root: unit tests and the integration tests that drive the real runc; the
# ARM builds with their unit tests under qemu-user; the systemd unit, checked
# with systemd-analyze and run under a real systemd in a qemu VM; the tests that
# need cgroup v2 controllers (tests/vm_*.rs, #[ignore]d on this host) inside
# the x86_64 and the aarch64 qemu VMs. The cluster
# tests run against a real etcd + kube-apiserver + controller-manager +
# scheduler built from the Go module proxy (tests/cluster/).
# The README's demo runs too (headless), so its first command cannot rot.
#   tests/run.sh                 everything, as root
#   tests/run.sh --test logs     only what cargo test selects (no ARM, no unit check)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
need_root
install_deps
# The control plane the cluster tests join (Go, built once per machine and cached).
install_go
bash tests/cluster/build.sh >/dev/null
# metrics-server, for the `kubectl top` test (about 2 min cold).
bash tests/cluster/build.sh metrics-server >/dev/null
if (($#)); then
    exec cargo test --no-fail-fast "$@"
fi
status=0
# Unit tests (the binary's, and the library's once there is one), with those
# #[ignore]d for needing root, runc or mounts: this runs as root. Only they
# get --include-ignored: tests/vm_*.rs are #[ignore]d here and run in the VMs
# below, and probe::run's exec_cost is a benchmark (tests/bench/probes.sh).
# The binary compiles the library's modules into itself (src/main.rs): with a
# library, its copy of the unit tests would run each of them a second time.
units=(--bins)
[[ -f src/lib.rs ]] && units=(--lib)
echo "== unit tests, including those that need root"
cargo test --no-fail-fast "${units[@]}" -- --include-ignored --skip exec_cost || status=1
echo "== integration tests"
cargo test --no-fail-fast --test '*' || status=1
if [[ -f src/lib.rs ]]; then cargo test --no-fail-fast --doc || status=1; fi
echo "== the README's demo (tests/demo.sh --headless)"
bash tests/demo.sh --headless || status=1
echo "== ARM: cross builds, unit tests under qemu-user"
bash tests/cross/run.sh || status=1
echo "== systemd unit"
bash systemd/verify.sh || status=1
echo "== systemd unit under a real systemd (qemu VM)"
cargo build --release -q
bash tests/vm/systemd-test.sh "${CARGO_TARGET_DIR:-target}/release/picolet" || status=1
# 40 pods through CNI per VM here (the issue's 200 cost ~18 min under TCG: run
# `PICOLET_VM_CHURN=200 tests/vm/suite.sh --test vm_network` for that).
export PICOLET_VM_CHURN=${PICOLET_VM_CHURN:-40}
echo "== cgroup v2, networking, eviction: tests/vm_*.rs in the x86_64 VM"
bash tests/vm/suite.sh || status=1
echo "== the same in the aarch64 VM (cortex-a72)"
bash tests/vm/suite.sh --arch aarch64 || status=1
exit $status
