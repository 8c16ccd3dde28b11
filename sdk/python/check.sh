#!/usr/bin/env bash
# The Python SDK's checks, as .ci/run runs them: install the package into a venv (as a user
# would: pip install ./sdk/python), check that the committed stubs match proto/, and run
# the pytest suite against a real coordinator (tests/conftest.py starts one). A run that
# collects no test fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${MANDATE_PY_SDK_VENV:-$root/target/python-sdk-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$here/requirements-dev.txt"
"${pip[@]}" --force-reinstall --no-deps "$here"
"${pip[@]}" "$here"
rm -rf "$here/build" "$here"/src/*.egg-info

echo "== python sdk: stubs match proto/"
"$venv/bin/python" "$here/tools/generate.py"
stubs=sdk/python/src/mandate/_proto
if ! git -C "$root" diff --quiet -- "$stubs" || [ -n "$(git -C "$root" ls-files --others --exclude-standard -- "$stubs")" ]; then
  git -C "$root" status --short -- "$stubs"
  echo "the generated stubs differ from proto/: run python sdk/python/tools/generate.py and commit" >&2
  exit 1
fi

echo "== python sdk: pytest"
bin="${MANDATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/mandate}"
[ -x "$bin" ] || (cd "$root" && cargo build --locked -q -p mandate-cli)
out="$(cd "$here/tests" && MANDATE_REQUIRE_BROWSER=1 MANDATE_BIN="$bin" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests" 2>&1)" || {
  echo "$out"
  exit 1
}
echo "$out" | tail -1
passed="$(echo "$out" | grep -oE '[0-9]+ passed' | awk '{print $1}' | tail -1)"
if [ "${passed:-0}" -lt 100 ]; then
  echo "expected the golden vectors and the flow tests to run; got ${passed:-0} passing tests" >&2
  exit 1
fi
