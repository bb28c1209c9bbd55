#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test
# (unit tests and the integration tests that drive the real runc) as root.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
need_root
install_deps
cargo test --no-fail-fast "$@"
