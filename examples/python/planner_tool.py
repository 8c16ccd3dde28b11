"""A planner, a worker and a tool in Python, from stubs generated out of proto/ with
grpcio-tools and Ed25519 from `cryptography`: the planner starts a task and delegates to
the worker (building and signing the link itself, byte for byte the Rust format); the tool
authorises the worker's calls online; the planner revokes the worker and the tool's next
check is denied.

Usage: python planner_tool.py ADDRESS ADMIN_KEY_FILE   (run.sh does everything)
Exits non-zero if any expected allow or deny does not happen.
"""

import base64
import hashlib
import os
import sys
import time

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gen"))
from mandate.token.v1 import token_pb2 as tok  # noqa: E402
from mandate.v1 import agents_pb2, agents_pb2_grpc  # noqa: E402
from mandate.v1 import authorization_pb2, authorization_pb2_grpc  # noqa: E402
from mandate.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: E402

TOOL = "spiffe://mandate.local/tools/py-files"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Agent:
    """Signs every request as docs/PROTOCOL.md says."""

    def __init__(self, channel, agent_id, key):
        self.id, self.key = agent_id, key
        self.agents = agents_pb2_grpc.AgentServiceStub(channel)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        self.authz = authorization_pb2_grpc.AuthorizationServiceStub(channel)

    def call(self, stub, service, method, request):
        path = f"/mandate.v1.{service}/{method}"
        body = request.SerializeToString()
        ts = str(now_ms())
        nonce = b64(os.urandom(16))
        payload = "\n".join([path, self.id, ts, nonce, hashlib.sha256(body).hexdigest()])
        sig = self.key.sign(b"mandate/v1/request\x00" + payload.encode())
        md = [
            ("x-mandate-agent", self.id),
            ("x-mandate-timestamp", ts),
            ("x-mandate-nonce", nonce),
            ("x-mandate-signature", b64(sig)),
        ]
        return getattr(stub, method)(request, metadata=md)


def link_digest(link: tok.Link) -> bytes:
    return hashlib.sha256(link.body + link.signature).digest()


def delegate(planner: Agent, chain: tok.Chain, holder_id: str, holder_key: bytes, resource, actions, ttl_ms):
    """Builds the child link, signs it with the planner's key, registers it (sealed)."""
    parent = chain.links[-1]
    parent_body = tok.LinkBody.FromString(parent.body)
    start = now_ms()
    body = tok.LinkBody(
        id=os.urandom(16),
        parent_digest=link_digest(parent),
        holder_key=holder_key,
        holder_agent=holder_id,
        capabilities=[tok.Capability(resource=resource, actions=actions)],
        not_before_ms=max(start, parent_body.not_before_ms),
        expires_at_ms=min(start + ttl_ms, parent_body.expires_at_ms),
        depth=parent_body.depth + 1,
        max_depth=0,
        kind=tok.LINK_KIND_DELEGATION,
        require_seal=parent_body.require_seal,
        require_online=parent_body.require_online,
    )
    raw = body.SerializeToString()
    child = tok.Link(body=raw, signature=planner.key.sign(b"mandate/v1/link\x00" + raw))
    submitted = tok.Chain(version=1, links=list(chain.links) + [child])
    resp = planner.call(planner.tasks, "TaskService", "Delegate", tasks_pb2.DelegateRequest(chain=submitted.SerializeToString()))
    return tok.Chain.FromString(resp.chain), resp.link_id


def proof(holder_key: Ed25519PrivateKey, chain: tok.Chain, action: str, resource: str) -> bytes:
    body = tok.InvocationBody(
        chain_digest=link_digest(chain.links[-1]),
        audience=TOOL,
        action=action,
        resource=resource,
        issued_at_ms=now_ms(),
        nonce=os.urandom(16),
    ).SerializeToString()
    sig = holder_key.sign(b"mandate/v1/invocation\x00" + body)
    return tok.Invocation(body=body, signature=sig).SerializeToString()


def main() -> int:
    address, admin_key_file = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(address)
    with open(admin_key_file, "rb") as f:
        admin_key = serialization.load_pem_private_key(f.read(), None)
    admin = Agent(channel, "spiffe://mandate.local/admin", admin_key)
    suffix = format(now_ms(), "x")
    ids = {n: f"spiffe://mandate.local/py/{n}-{suffix}" for n in ("planner", "worker")}
    keys = {n: Ed25519PrivateKey.generate() for n in ("planner", "worker", "tool")}
    for name, role in (("planner", "planner"), ("worker", "worker")):
        admin.call(admin.agents, "AgentService", "RegisterAgent", agents_pb2.RegisterAgentRequest(
            agent_id=ids[name], public_key=public_bytes(keys[name]), role=role, owner="python example"))
    try:
        admin.call(admin.agents, "AgentService", "RegisterAgent", agents_pb2.RegisterAgentRequest(
            agent_id=TOOL, public_key=public_bytes(keys["tool"]), role="tool"))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        print("the tool is registered already; run against a fresh coordinator", file=sys.stderr)
        return 1
    planner = Agent(channel, ids["planner"], keys["planner"])
    tool = Agent(channel, TOOL, keys["tool"])

    started = planner.call(planner.tasks, "TaskService", "StartTask", tasks_pb2.StartTaskRequest(
        intent=tasks_pb2.Intent(text="python walkthrough"),
        capabilities=[tok.Capability(resource="files/*", actions=["read", "write"])],
        ttl_ms=5 * 60_000, max_depth=1))
    root = tok.Chain.FromString(started.chain)
    print(f"task {started.task.task_id}: root chain with {len(root.links)} link")
    chain, link_id = delegate(planner, root, ids["worker"], public_bytes(keys["worker"]), "files/reports/*", ["read"], 120_000)
    print(f"delegated link {link_id} to the worker (sealed: {chain.links[-1].HasField('seal')})")

    failures = []

    def check(action, resource, want_allowed, want_reason=""):
        req = authorization_pb2.AuthorizeRequest(
            chain=chain.SerializeToString(), invocation=proof(keys["worker"], chain, action, resource),
            action=action, resource=resource)
        r = tool.call(tool.authz, "AuthorizationService", "Authorize", req)
        ok = r.allowed == want_allowed and (want_allowed or r.reason == want_reason)
        verdict = "allowed" if r.allowed else f"denied ({r.reason})"
        print(f"  {'ok ' if ok else 'BAD'} worker {action} {resource}: {verdict}")
        if not ok:
            failures.append(f"{action} {resource}")

    check("read", "files/reports/q3.txt", True)
    check("write", "files/reports/q3.txt", False, "NOT_PERMITTED")
    check("read", "files/secrets/key", False, "NOT_PERMITTED")
    revoked = planner.call(planner.tasks, "TaskService", "RevokeLink", tasks_pb2.RevokeLinkRequest(link_id=link_id, reason="python done"))
    print(f"revoked {len(revoked.revoked_link_ids)} link(s)")
    check("read", "files/reports/q3.txt", False, "REVOKED")
    # An unsigned call is refused.
    try:
        planner.agents.ListAgents(agents_pb2.ListAgentsRequest())
        failures.append("unsigned call accepted")
    except grpc.RpcError as e:
        print(f"  ok  unsigned call refused: {e.code().name}")
    if failures:
        print(f"{len(failures)} expectation(s) failed: {failures}")
        return 1
    print("all expected allows and denies happened")
    return 0


if __name__ == "__main__":
    sys.exit(main())
