#!/usr/bin/env bash
# Interleaved A/B of two builds of the extension: runs COMMAND ROUNDS times with each
# build in turn (A B A B ...), so that the machine's slow and fast periods reach both
# alike, and puts the build that was in place back at the end. The "A/B" figures of
# bench/README.md "What we learned" came from this, with bench/profiling/module_times.py.
#
#   make build && cp fused_rnn/_C*.so /tmp/A.so     # at the old commit
#   make build && cp fused_rnn/_C*.so /tmp/B.so     # at the new commit
#   bench/profiling/ab_builds.sh /tmp/A.so /tmp/B.so 3 .venv/bin/python bench/profiling/module_times.py
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 A.so B.so ROUNDS COMMAND..." >&2
  exit 2
fi
a=$1 b=$2 rounds=$3
shift 3
cd "$(dirname "$0")/../.."
installed=$(ls fused_rnn/_C*.so)
saved=$(mktemp)
cp "$installed" "$saved"
trap 'cp "$saved" "$installed"; rm -f "$saved"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for _ in $(seq "$rounds"); do
  for build in "$a" "$b"; do
    cp "$build" "$installed"
    echo -n "$(basename "$build"): "
    "$@"
  done
done
