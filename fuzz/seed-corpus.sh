#!/usr/bin/env bash
# Seeds the fuzz corpora with every chain and invocation from the golden vectors.
set -euo pipefail
cd "$(dirname "$0")"
python3 - <<'PY'
import base64, hashlib, json, os
doc = json.load(open("../crates/core/testdata/vectors.json"))
def raw(text, prefix):
    body = text[len(prefix):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
for target in ("decode_chain", "verify_chain", "verify_invocation"):
    os.makedirs(f"corpus/{target}", exist_ok=True)
for case in doc["cases"]:
    chain = raw(case["chain"], "mandate1.")
    seeds = {"decode_chain": [chain], "verify_chain": [chain], "verify_invocation": []}
    if case["invocation"]:
        inv = raw(case["invocation"], "mandate-inv1.")
        seeds["decode_chain"].append(inv)
        seeds["verify_invocation"].append(inv)
    for target, items in seeds.items():
        for item in items:
            name = hashlib.sha1(item).hexdigest()
            with open(f"corpus/{target}/{name}", "wb") as f:
                f.write(item)
PY
