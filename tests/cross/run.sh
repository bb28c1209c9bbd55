#!/bin/bash
# Cross-build picolet for the ARM boards and run its unit tests under qemu-user.
#   tests/cross/run.sh            # all three targets
#   TARGETS="armv7-unknown-linux-gnueabihf" tests/cross/run.sh
# Idempotent: installs the Debian cross packages and rustup targets only when
# missing. Linkers, runners and CC_ for ring come from .cargo/config.toml.
# Exit status: 0 when every build and every test run passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGETS=${TARGETS:-"aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf"}
# Unit tests run under qemu-user only here (musl is the same aarch64 code as gnu).
TEST_TARGETS=${TEST_TARGETS:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}
PKGS="qemu-user-static gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross"

missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "== apt-get install $missing"
    [ "$(id -u)" = 0 ] || { echo "need root to install: $missing" >&2; exit 1; }
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null || exit 1
fi
installed=$(rustup target list --installed)
for t in $TARGETS; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t" || exit 1
done

# Tells tests they run under qemu-user. None needs it today: the unit tests
# that need root, runc or mounts (#[ignore]d, run here with --include-ignored,
# so this runs as root) pass under qemu-aarch64 and qemu-arm, because qemu
# forwards mount/unshare/setns and execs the host's x86_64 runc natively. A
# test that cannot work here is #[ignore]d with the reason, never green early.
export PICOLET_QEMU_USER=1
# The binary's unit tests, and the library's once there is one; probe::run's
# exec_cost is a benchmark, not a test.
# The binary compiles the library's modules into itself (src/main.rs): with a
# library, its copy of the unit tests would run each of them a second time.
units=(--bins)
[ -f src/lib.rs ] && units=(--lib)

fail=0
summary=()
for t in $TARGETS; do
    echo "== $t: release build"
    s=$SECONDS
    if cargo build --release --locked --target "$t" -q; then
        bin=$CARGO_TARGET_DIR/$t/release/picolet
        summary+=("$t build ok $((SECONDS - s))s $(stat -c %s "$bin") bytes")
        # Smoke: the binary starts under qemu-user and answers --version.
        cargo run --release --locked --target "$t" -q -- --version || { fail=1; summary+=("$t --version FAILED"); }
    else
        fail=1; summary+=("$t build FAILED"); continue
    fi
    case " $TEST_TARGETS " in *" $t "*) ;; *) continue ;; esac
    echo "== $t: unit tests under qemu-user"
    s=$SECONDS
    if cargo test --locked "${units[@]}" --target "$t" -q -- --include-ignored --skip exec_cost 2>&1 | tee "$CARGO_TARGET_DIR/cross-test-$t.log" | grep -E '^test result|FAILED|panicked|^error'; then :; fi
    rc=${PIPESTATUS[0]}
    summary+=("$t unit tests rc=$rc $((SECONDS - s))s")
    [ "$rc" = 0 ] || fail=1
done
echo "== summary"
printf '  %s\n' "${summary[@]}"
exit $fail
