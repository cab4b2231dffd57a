#!/usr/bin/env bash
# Runs the official Tencent Cloud KMS Python SDK against `datakey kms serve` on loopback.
#
# Creates a virtual environment (target/sdk-venv) with the pinned SDK from PyPI, builds the
# binary, starts the server on a free port with a temporary keyring and made-up credentials,
# runs tests/sdk/kms_sdk_client.py, then stops the server with SIGTERM and checks that it exits 0.
# Ends with "sdk: N passed, M failed"; exits non-zero on any failure.
# Environment: DATAKEY_BIN to use a prebuilt binary; CARGO_TARGET_DIR is honoured.
set -euo pipefail

SDK_PACKAGES=(tencentcloud-sdk-python-kms==3.1.192 tencentcloud-sdk-python-common==3.1.195)
START_TIMEOUT_TENTHS=200
STOP_TIMEOUT_TENTHS=200

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/sdk-venv
work=$(mktemp -d)
server_pid=

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "sdk-test: $*" >&2
    echo "sdk: 0 passed, 1 failed"
    exit 1
}

# The SDK, installed once per target directory.
if ! "$venv/bin/python" -c 'import tencentcloud.kms' 2>/dev/null; then
    python3 -m venv "$venv" || fail "cannot create a virtual environment at $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${SDK_PACKAGES[@]}" \
        || fail "cannot install ${SDK_PACKAGES[*]}"
fi

if [[ -z ${DATAKEY_BIN:-} ]]; then
    (cd "$root" && cargo build --quiet --bin datakey) || fail "cargo build failed"
    DATAKEY_BIN=$target/debug/datakey
fi

export TENCENTCLOUD_SECRET_ID=AKIDdatakeysdktest00000000000001
export TENCENTCLOUD_SECRET_KEY=datakeySdkTestSecretKey000000001
export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1

"$DATAKEY_BIN" kms serve --listen 127.0.0.1:0 --keyring "$work/keyring.json" \
    >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!

# The server prints its address on its first line of output.
host=
for _ in $(seq "$START_TIMEOUT_TENTHS"); do
    host=$(sed -n 's|^datakey kms serve: listening on http://||p' "$work/serve.out")
    [[ -n $host ]] && break
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited: $(cat "$work/serve.err")"
    sleep 0.1
done
[[ -n $host ]] || fail "the server did not start"

DATAKEY_SERVE_HOST=$host "$venv/bin/python" "$root/tests/sdk/kms_sdk_client.py" \
    | tee "$work/client.out" || true
passed=$(sed -n 's/^checks: passed=\([0-9]*\) failed=[0-9]*$/\1/p' "$work/client.out")
failed=$(sed -n 's/^checks: passed=[0-9]* failed=\([0-9]*\)$/\1/p' "$work/client.out")
if [[ -z $passed || -z $failed ]]; then
    echo "sdk-test: the client script did not finish" >&2
    passed=${passed:-0} failed=$((${failed:-0} + 1))
fi

# A clean stop: SIGTERM, then exit status 0 within the timeout.
kill -TERM "$server_pid"
for _ in $(seq "$STOP_TIMEOUT_TENTHS"); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    echo "FAIL clean_stop: the server did not stop on SIGTERM"
    failed=$((failed + 1))
elif ! wait "$server_pid"; then
    echo "FAIL clean_stop: the server exited non-zero after SIGTERM"
    failed=$((failed + 1))
else
    echo "ok   clean_stop"
    passed=$((passed + 1))
fi
server_pid=

echo "sdk: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
