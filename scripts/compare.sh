#!/usr/bin/env bash
# Times datakey against cp and age on one file held in the page cache, side by side in ONE
# hyperfine run (so the ratios share the machine's mood), then measures datakey's peak memory on
# a larger file with /usr/bin/time -v. Prints the ratios.
#
#   scripts/compare.sh
#
# A second run times a batch of small files: one `datakey encrypt` for all of them (with and
# without the data-key cache) against `age` run once per file, and counts the GenerateDataKey
# calls the cached batch made.
#
# Environment (all optional):
#   SIZE_MIB=1024      size of the timed file
#   RSS_SIZE_MIB=2048  size of the file for the peak-memory runs (0 skips them)
#   RUNS=5             timed runs per command (after one warm-up)
#   BATCH_FILES=1000   small files (4 KiB) for the batch comparison (0 skips it)
#   WORKDIR=/tmp       where the scratch directory goes (same disk for every command)
#   DATAKEY_BIN=...    a prebuilt binary instead of `cargo build --release`
#   JSON_OUT=FILE      keep hyperfine's JSON export there
#
# Needs hyperfine, age and /usr/bin/time (Debian packages hyperfine, age, time; installed with
# apt-get when missing and running as root), and python3 or jq. It uses a throwaway keyring and
# removes every file it made.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-1024}
rss_mib=${RSS_SIZE_MIB:-2048}
batch_files=${BATCH_FILES:-1000}
runs=${RUNS:-5}

# -- tools ---------------------------------------------------------------------------------------
missing=()
command -v hyperfine > /dev/null || missing+=(hyperfine)
command -v age > /dev/null || missing+=(age)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "== installing ${missing[*]}"
    apt-get install -y "${missing[@]}" > /dev/null || {
      apt-get update > /dev/null && apt-get install -y "${missing[@]}" > /dev/null
    }
  else
    echo "compare.sh: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
    exit 2
  fi
fi
if ! command -v python3 > /dev/null && ! command -v jq > /dev/null; then
  echo "compare.sh: needs python3 or jq to read hyperfine's results" >&2
  exit 2
fi

if [ -n "${DATAKEY_BIN:-}" ]; then
  bin=$DATAKEY_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/datakey
fi
bin=$(realpath "$bin")

# -- scratch files -------------------------------------------------------------------------------
work=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/datakey-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export DATAKEY_KEYRING=$work/keyring.json

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core)' || true
echo "kernel $(uname -r); $(hyperfine --version); age $(age --version)"
echo "scratch directory $work ($(df -T . | awk 'NR==2 {print $2}'))"

echo "== making a ${size_mib} MiB random file and its encrypted forms"
head -c "${size_mib}M" /dev/urandom > plain
"$bin" encrypt -o plain.dk plain 2> /dev/null
age-keygen -o age.key 2> /dev/null
age-keygen -y age.key > age.pub
age -R age.pub -o plain.age plain
cat plain plain.dk plain.age > /dev/null # warm the page cache

# -- the timed run -------------------------------------------------------------------------------
# Each command writes to `out` (removed before every run, outside the timing) or to /dev/null.
# datakey syncs its output before renaming it into place; `cp + sync` shows what that costs.
json=${JSON_OUT:-$work/results.json}
hyperfine -N --warmup 1 --runs "$runs" --prepare 'rm -f out' --export-json "$json" \
  -n 'cp > file' 'cp plain out' \
  -n 'cp + sync > file' "sh -c 'cp plain out && sync out'" \
  -n 'datakey encrypt > file' "$bin encrypt -o out plain" \
  -n 'datakey decrypt > file' "$bin decrypt -o out plain.dk" \
  -n 'age encrypt > file' 'age -R age.pub -o out plain' \
  -n 'age decrypt > file' 'age -d -i age.key -o out plain.age' \
  -n 'cp > null' 'cp plain /dev/null' \
  -n 'datakey encrypt > null' "$bin encrypt -o /dev/null plain" \
  -n 'datakey decrypt > null' "$bin decrypt -o /dev/null plain.dk" \
  -n 'datakey encrypt chacha > null' "$bin encrypt --cipher chacha20-poly1305 -o /dev/null plain" \
  -n 'datakey encrypt 1 thread > null' "$bin encrypt --threads 1 -o /dev/null plain" \
  -n 'datakey decrypt 1 thread > null' "$bin decrypt --threads 1 -o /dev/null plain.dk" \
  -n 'age encrypt > null' 'age -R age.pub -o /dev/null plain' \
  -n 'age decrypt > null' 'age -d -i age.key -o /dev/null plain.age'
rm -f out

echo
echo "== ratios (median wall time; below 1 is faster than the reference)"
pairs='datakey encrypt > file|cp > file
datakey decrypt > file|cp > file
datakey encrypt > file|cp + sync > file
datakey decrypt > file|cp + sync > file
datakey encrypt > file|age encrypt > file
datakey decrypt > file|age decrypt > file
datakey encrypt > null|age encrypt > null
datakey encrypt chacha > null|age encrypt > null
datakey decrypt > null|age decrypt > null
datakey encrypt > null|datakey encrypt 1 thread > null
datakey decrypt > null|datakey decrypt 1 thread > null'
if command -v python3 > /dev/null; then
  PAIRS=$pairs python3 - "$json" << 'EOF'
import json, os, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print(f"{'command':34} {'median s':>9} {'stddev':>7}")
for name, r in results.items():
    print(f"{name:34} {r['median']:9.3f} {r['stddev']:7.3f}")
print()
for line in os.environ["PAIRS"].splitlines():
    a, b = line.split("|")
    ratio = results[a]["median"] / results[b]["median"]
    print(f"{a:34} / {b:30} = {ratio:5.2f}  ({1 / ratio:.2f}x as fast)")
EOF
else
  jq -r '.results[] | "\(.command)\t\(.median)"' "$json"
  while IFS='|' read -r a b; do
    jq -r --arg a "$a" --arg b "$b" '
      (.results | map({(.command): .median}) | add) as $m
      | "\($a) / \($b) = \($m[$a] / $m[$b])"' "$json"
  done <<< "$pairs"
fi

# -- peak memory ---------------------------------------------------------------------------------
if [ "$rss_mib" -gt 0 ]; then
  echo
  echo "== peak resident memory, ${rss_mib} MiB file (/usr/bin/time -v)"
  rm -f plain.dk plain.age
  head -c "${rss_mib}M" /dev/urandom > plain
  for step in "encrypt -o plain.dk plain" "decrypt -o /dev/null plain.dk"; do
    # shellcheck disable=SC2086 # $step is split into arguments on purpose
    kib=$(/usr/bin/time -v "$bin" $step 2>&1 > /dev/null |
      awk -F': ' '/Maximum resident set size/ {print $2}')
    echo "datakey $step: peak RSS $((kib / 1024)) MiB"
  done
fi

# -- a batch of small files ----------------------------------------------------------------------
if [ "$batch_files" -gt 0 ]; then
  echo
  echo "== a batch of ${batch_files} files of 4 KiB"
  rm -f plain plain.dk plain.age
  mkdir batch
  for i in $(seq -w 1 "$batch_files"); do
    head -c 4096 /dev/urandom > "batch/f$i"
  done
  batch_json=$work/batch.json
  hyperfine -N --warmup 1 --runs "$runs" --prepare "sh -c 'rm -f batch/*.dk batch/*.age'" \
    --export-json "$batch_json" \
    -n 'datakey batch, cache' "sh -c '$bin encrypt --reuse-data-key $batch_files batch/f*'" \
    -n 'datakey batch, no cache' "sh -c '$bin encrypt batch/f*'" \
    -n 'age once per file' "sh -c 'for f in batch/f*; do age -R age.pub -o \$f.age \$f; done'"

  rm -f batch/*.dk batch/*.age
  log=$("$bin" encrypt -vv --reuse-data-key "$batch_files" batch/f* 2>&1)
  calls=$(grep -c 'generated by the KMS' <<< "$log" || true)
  echo "GenerateDataKey calls for the cached batch: $calls (from datakey -vv)"
  if command -v python3 > /dev/null; then
    python3 - "$batch_json" << 'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
for name, r in results.items():
    print(f"{name:34} {r['median']:9.3f} {r['stddev']:7.3f}")
age = results["age once per file"]["median"]
for name in ("datakey batch, cache", "datakey batch, no cache"):
    print(f"{name:34} is {age / results[name]['median']:.2f}x as fast as age once per file")
EOF
  else
    jq -r '.results[] | "\(.command)\t\(.median)"' "$batch_json"
  fi
fi
