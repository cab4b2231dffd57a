#!/usr/bin/env bash
# Every test datakey has: the Rust unit and integration tests, a build of the benchmarks, and the
# official Tencent Cloud Python SDK against `datakey kms serve`. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --all-targets

echo "== cargo bench --no-run"
cargo bench --no-run

if [ -x scripts/sdk-test.sh ]; then
  echo "== official SDK against kms serve"
  scripts/sdk-test.sh
fi
