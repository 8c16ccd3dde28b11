#!/usr/bin/env bash
# Runs the Python example against a fresh coordinator: installs grpcio, grpcio-tools and
# cryptography into a virtualenv, generates stubs from proto/, starts `mandate serve` on
# an ephemeral port with its own data directory, runs planner_tool.py, stops the server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${MANDATE_PY_VENV:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
rm -rf "$here/gen" && mkdir -p "$here/gen"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" \
  mandate/token/v1/token.proto mandate/v1/agents.proto mandate/v1/tasks.proto mandate/v1/authorization.proto
for d in mandate mandate/v1 mandate/token mandate/token/v1; do touch "$here/gen/$d/__init__.py"; done

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
