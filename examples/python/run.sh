#!/usr/bin/env bash
# Runs the Python example against a fresh coordinator: installs the `mandate` package
# (sdk/python) into a virtualenv, starts `mandate serve` on an ephemeral port with its own
# data directory, runs planner_tool.py, stops the server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${MANDATE_PY_VENV:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "$root/sdk/python"
rm -rf "$root/sdk/python/build" "$root"/sdk/python/src/*.egg-info

bin="${MANDATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/mandate}"
[ -x "$bin" ] || (cd "$root" && cargo build --locked -q -p mandate-cli)
data="$(mktemp -d)"
log="$data/serve.log"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data/mandate-data" > "$log" 2>/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 200); do
  grep -q "listening on" "$log" 2>/dev/null && break
  sleep 0.05
done
addr="$(head -1 "$log" | awk '{print $NF}')"
[ -n "$addr" ] || { echo "the coordinator did not start" >&2; exit 1; }
"$venv/bin/python" "$here/planner_tool.py" "$addr" "$data/mandate-data/admin.key"
