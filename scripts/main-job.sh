#!/usr/bin/env bash
# The main job, end to end: build datakey, make a real file (a tarball of a system directory),
# encrypt it with the embedded local keyring, decrypt it, and check the bytes match.
#
#   scripts/main-job.sh [DIRECTORY_TO_TAR]      (default: /usr/share)
#
# It uses a throwaway keyring under a temporary directory unless DATAKEY_KEYRING is set.
set -euo pipefail
cd "$(dirname "$0")/.."

src=${1:-/usr/share}
work=$(mktemp -d "${TMPDIR:-/tmp}/datakey-main-job.XXXXXX")
trap 'rm -rf "$work"' EXIT
export DATAKEY_KEYRING=${DATAKEY_KEYRING:-$work/keyring.json}

cargo build --release --quiet
bin=target/release/datakey

echo "== making a tarball of $src"
tar -cf "$work/data.tar" -C "$(dirname "$src")" "$(basename "$src")" 2>/dev/null || true
ls -l "$work/data.tar"

echo "== encrypt (keyring: $DATAKEY_KEYRING)"
time "$bin" encrypt -c purpose=main-job "$work/data.tar"
"$bin" inspect "$work/data.tar.dk"

echo "== decrypt"
time "$bin" decrypt -c purpose=main-job -o "$work/restored.tar" "$work/data.tar.dk"

a=$(sha256sum < "$work/data.tar")
b=$(sha256sum < "$work/restored.tar")
if [ "$a" = "$b" ]; then
  echo "OK: restored file is byte for byte identical (sha256 ${a%% *})"
else
  echo "FAILED: restored file differs" >&2
  exit 1
fi
