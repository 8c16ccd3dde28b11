"""A planner, a worker and a tool in Python, on the `mandate` package (sdk/python): the
planner starts a task and delegates to the worker (the link is built and signed in Python,
then sealed by the coordinator); the tool checks the worker's calls online and offline;
the planner revokes the worker and the tool's next check is denied, offline too, through
the revocation feed.

Usage: python planner_tool.py ADDRESS ADMIN_KEY_FILE   (run.sh does everything)
Exits non-zero if any expected allow or deny does not happen.
"""

from __future__ import annotations

import sys
import time

import mandate
from mandate import Call, Capability, Chain, Client, MandateError, Signer, SigningKey, ToolVerifier

TOOL = "spiffe://mandate.local/tools/py-files"


def main() -> int:
    address, admin_key_file = sys.argv[1], sys.argv[2]
    admin = Client(address, Signer.from_key_file("spiffe://mandate.local/admin", admin_key_file))
    suffix = format(time.time_ns(), "x")
    keys = {n: SigningKey.generate() for n in ("planner", "worker", "tool")}
    ids = {"planner": f"spiffe://mandate.local/py/planner-{suffix}", "tool": TOOL}
    for name, role in (("planner", "planner"), ("tool", "tool")):
        try:
            admin.register_agent(agent_id=ids[name], public_key=keys[name].public_key, role=role)
        except mandate.AlreadyExists:
            print("the tool is registered already; run against a fresh coordinator", file=sys.stderr)
            return 1
    planner = Client(address, Signer(ids["planner"], keys["planner"]))
    tool = Client(address, Signer(TOOL, keys["tool"]))
    # The planner registers its own worker.
    ids["worker"] = f"{ids['planner']}/worker"
    planner.register_agent(
        agent_id=ids["worker"],
        public_key=keys["worker"].public_key,
        role="worker",
        parent_agent_id=ids["planner"],
    )

    started = planner.start_task(
        intent=mandate.client.tasks_pb2.Intent(text="python walkthrough"),
        capabilities=[Capability.of("files/*", "read", "write")],
        ttl_ms=5 * 60_000,
        max_depth=1,
    )
    root = Chain.decode(started.chain)
    print(f"task {started.task.task_id}: root chain with {len(root)} link")
    child = mandate.delegate(
        root,
        keys["planner"],
        to_key=keys["worker"].public_key,
        to_agent=ids["worker"],
        capabilities=[Capability.of("files/reports/*", "read")],
        ttl_ms=120_000,
    )
    chain = planner.delegate(child)
    print(f"delegated link {chain.leaf.id_hex} to the worker (sealed: {chain.leaf.seal is not None})")

    failures: list[str] = []

    def check(verifier: ToolVerifier, action: str, resource: str, want: str) -> None:
        call = Call(action, resource)
        proof = mandate.prove(chain, keys["worker"], TOOL, call, force=True)
        online = tool.authorize(chain, proof, call)
        offline = verifier.check(chain, mandate.prove(chain, keys["worker"], TOOL, call, force=True), call)
        got = [("allowed" if d.allowed else d.reason) for d in (online, offline)]
        ok = got == [want, want]
        print(f"  {'ok ' if ok else 'BAD'} worker {action} {resource}: online {got[0]}, offline {got[1]}")
        if not ok:
            failures.append(f"{action} {resource}")

    with ToolVerifier(tool) as verifier:
        check(verifier, "read", "files/reports/q3.txt", "allowed")
        check(verifier, "write", "files/reports/q3.txt", "NOT_PERMITTED")
        check(verifier, "read", "files/secrets/key", "NOT_PERMITTED")
        epoch = verifier.epoch
        revoked = planner.revoke_link(link_id=chain.leaf.id_hex, reason="python done")
        print(f"revoked {len(revoked.revoked_link_ids)} link(s)")
        mandate.wait_for(lambda: verifier.epoch > epoch)
        check(verifier, "read", "files/reports/q3.txt", "REVOKED")
    # A call signed with a key that is not the planner's is refused.
    try:
        Client(address, Signer(ids["planner"], SigningKey.generate())).list_agents()
        failures.append("forged call accepted")
    except MandateError as e:
        print(f"  ok  forged call refused: {e.reason}")
    if failures:
        print(f"{len(failures)} expectation(s) failed: {failures}")
        return 1
    print("all expected allows and denies happened")
    return 0


if __name__ == "__main__":
    sys.exit(main())
