"""Calling the coordinator: a :class:`Signer` signs each request (docs/PROTOCOL.md) and a
:class:`Client` wraps every service, raising :class:`mandate.errors.MandateError`
subclasses with the reason code on failure.

Each request is serialised once and those exact bytes are both signed and sent, so map
fields (signals, labels) can never be signed in one order and sent in another.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import grpc
from google.protobuf.message import Message

from mandate._proto.mandate.v1 import (
    access_pb2,
    agents_pb2,
    approvals_pb2,
    audit_pb2,
    authorization_pb2,
    policy_pb2,
    tasks_pb2,
)
from mandate.errors import MandateError, from_rpc_error
from mandate.keys import SigningKey
from mandate.token import Call, Capability, Chain, Invocation, check_agent_id

R = TypeVar("R", bound=Message)

REQUEST_DOMAIN = b"mandate/v1/request"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """Signs requests as one agent. Keys come from a PKCS#8 PEM file (mode 0600), the
    environment (:meth:`from_env`), or a :class:`SigningKey` in memory."""

    def __init__(
        self,
        agent: str,
        key: SigningKey,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.agent = check_agent_id(agent)
        self.key = key
        self.clock = clock

    @staticmethod
    def from_key_file(agent: str, path: str | os.PathLike[str]) -> "Signer":
        return Signer(agent, SigningKey.load(path))

    @staticmethod
    def from_env() -> "Signer":
        """`MANDATE_AGENT`, and `MANDATE_KEY_PEM` (the PEM text) or `MANDATE_KEY` (a file)."""
        agent = os.environ.get("MANDATE_AGENT", "")
        if not agent:
            raise MandateError("KEY_FILE", "MANDATE_AGENT is not set")
        pem = os.environ.get("MANDATE_KEY_PEM")
        if pem:
            return Signer(agent, SigningKey.from_pem(pem))
        path = os.environ.get("MANDATE_KEY")
        if not path:
            raise MandateError("KEY_FILE", "set MANDATE_KEY_PEM or MANDATE_KEY")
        return Signer.from_key_file(agent, path)

    def metadata(self, method: str, body: bytes) -> list[tuple[str, str]]:
        """The four signature headers for `body` sent to `method` (the full gRPC path)."""
        timestamp = str(self.clock())
        nonce = _b64(os.urandom(16))
        payload = "\n".join(
            [method, self.agent, timestamp, nonce, hashlib.sha256(body).hexdigest()]
        ).encode()
        return [
            ("x-mandate-agent", self.agent),
            ("x-mandate-timestamp", timestamp),
            ("x-mandate-nonce", nonce),
            ("x-mandate-signature", _b64(self.key.sign(REQUEST_DOMAIN, payload))),
        ]


def servers(server: str) -> list[str]:
    """The coordinator addresses in `server`: one, or several separated by commas
    (`a:7468,b:7468`, as `--server` and `MANDATE_SERVER` take them)."""
    parts = [s.strip() for s in server.split(",") if s.strip()]
    if not parts:
        raise MandateError("INVALID_ARGUMENT", "no coordinator address given")
    return parts


def unreachable(e: grpc.RpcError) -> bool:
    """Whether a call failed without any coordinator answering it (connection refused,
    reset or lost), or one answered that no longer leads the service (`NOT_LEADER`): the
    same signed request may then go to another coordinator, which refuses it as replayed
    if the first one had taken it after all (it is never applied twice)."""
    code = e.code() if hasattr(e, "code") else None  # type: ignore[attr-defined]
    return code == grpc.StatusCode.UNAVAILABLE and from_rpc_error(e).reason in ("", "NOT_LEADER")


def _target(server: str) -> str:
    for scheme in ("http://", "https://"):
        if server.startswith(scheme):
            return server[len(scheme):].rstrip("/")
    return server


_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # A coordinator that stops answering (paused, cut off) fails the calls waiting on it
    # within 10 s of silence, which moves them to the next coordinator given.
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
]


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise MandateError("TLS", f"cannot read the {what} `{os.fspath(path)}`: {e.strerror}") from None


def tls_credentials(
    server: str,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials | None:
    """The channel credentials for `server`, or None for plaintext. With any file, a bare
    `host:port` means TLS; `https://` needs the CA file; `http://` with TLS files is refused
    rather than sent in plaintext (the same rules as the Rust SDK and the CLI)."""
    given = ca_file is not None or cert_file is not None or key_file is not None
    https = server.startswith("https://")
    if given and server.startswith("http://"):
        raise MandateError("TLS", f"`{server}` is plaintext but TLS files were given: use https://")
    if not given and not https:
        return None
    if ca_file is None:
        raise MandateError("TLS", f"`{server}` needs the CA that signed the coordinator's certificate (ca_file)")
    if (cert_file is None) != (key_file is None):
        raise MandateError("TLS", "a client certificate needs its key, and a key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA file"),
        private_key=_read(key_file, "client key") if key_file is not None else None,
        certificate_chain=_read(cert_file, "client certificate") if cert_file is not None else None,
    )


class Client:
    """A signed client of every `mandate.v1` service.

    Methods take the request message or its fields as keyword arguments, and return the
    response message (streams: an iterator of messages). Failures raise
    :class:`mandate.errors.MandateError` subclasses (`Denied`, `InvalidArgument`, ...)
    carrying the coordinator's reason code.
    """

    def __init__(
        self,
        server: str,
        signer: Signer,
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """`server` is `host:port` or a URI, or several separated by commas: calls go to
        one and move to the next when it cannot be reached (the same signed request, so a
        call is never taken twice). For TLS give `ca_file` (the CA that signed the
        coordinator's certificate); for mutual TLS also `cert_file` and `key_file`."""
        self.server = server
        self.signer = signer
        self.timeout = timeout
        # Whether the coordinator is authenticated by its certificate (a channel passed in
        # is not known to be).
        self.tls = False
        if channel is not None:
            self.channels = [channel]
        else:
            self.channels = []
            for address in servers(server):
                creds = tls_credentials(address, ca_file, cert_file, key_file)
                self.tls = creds is not None
                if creds is None:
                    self.channels.append(grpc.insecure_channel(_target(address), options=_CHANNEL_OPTIONS))
                else:
                    self.channels.append(grpc.secure_channel(_target(address), creds, options=_CHANNEL_OPTIONS))
        self._current = 0

    @property
    def channel(self) -> grpc.Channel:
        """The channel calls go to now."""
        return self.channels[self._current]

    def _fail_over(self, failed: int) -> None:
        # Concurrent calls that failed on the same channel move on once.
        if self._current == failed:
            self._current = (failed + 1) % len(self.channels)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- plumbing ----

    def _request(self, cls: type[R], request: R | None, fields: Mapping[str, Any]) -> R:
        if request is not None and fields:
            raise TypeError("pass the request message or its fields, not both")
        return request if request is not None else cls(**fields)

    def _unary(self, path: str, request: Message, response: type[R]) -> R:
        body = request.SerializeToString()
        metadata = self.signer.metadata(path, body)
        for attempt in range(len(self.channels)):
            index = self._current
            call = self.channels[index].unary_unary(
                path, request_serializer=lambda b: b, response_deserializer=response.FromString
            )
            try:
                return call(body, metadata=metadata, timeout=self.timeout)  # type: ignore[no-any-return]
            except grpc.RpcError as e:
                if attempt + 1 < len(self.channels) and unreachable(e):
                    self._fail_over(index)
                    continue
                raise from_rpc_error(e) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _stream(self, path: str, request: Message, response: type[R]) -> Iterator[R]:
        body = request.SerializeToString()
        metadata = self.signer.metadata(path, body)
        current = _Current()

        def messages() -> Iterator[R]:
            for attempt in range(len(self.channels)):
                index = self._current
                call = self.channels[index].unary_stream(
                    path, request_serializer=lambda b: b, response_deserializer=response.FromString
                )
                current.stream = call(body, metadata=metadata)
                received = False
                try:
                    for message in current.stream:
                        received = True
                        yield message
                    return
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                        return
                    # Before its first message a stream may move to another coordinator.
                    if not received and attempt + 1 < len(self.channels) and unreachable(e):
                        self._fail_over(index)
                        continue
                    raise from_rpc_error(e) from None

        return _Stream(messages(), current)

    # ---- AgentService ----

    def register_agent(self, request: agents_pb2.RegisterAgentRequest | None = None, **fields: Any) -> agents_pb2.RegisterAgentResponse:
        """Registers an agent (admins; or an agent its own worker, `parent_agent_id` = itself)."""
        return self._unary("/mandate.v1.AgentService/RegisterAgent", self._request(agents_pb2.RegisterAgentRequest, request, fields), agents_pb2.RegisterAgentResponse)

    def get_agent(self, request: agents_pb2.GetAgentRequest | None = None, **fields: Any) -> agents_pb2.GetAgentResponse:
        return self._unary("/mandate.v1.AgentService/GetAgent", self._request(agents_pb2.GetAgentRequest, request, fields), agents_pb2.GetAgentResponse)

    def list_agents(self, request: agents_pb2.ListAgentsRequest | None = None, **fields: Any) -> agents_pb2.ListAgentsResponse:
        return self._unary("/mandate.v1.AgentService/ListAgents", self._request(agents_pb2.ListAgentsRequest, request, fields), agents_pb2.ListAgentsResponse)

    def disable_agent(self, request: agents_pb2.DisableAgentRequest | None = None, **fields: Any) -> agents_pb2.DisableAgentResponse:
        return self._unary("/mandate.v1.AgentService/DisableAgent", self._request(agents_pb2.DisableAgentRequest, request, fields), agents_pb2.DisableAgentResponse)

    # ---- TaskService ----

    def start_task(self, request: tasks_pb2.StartTaskRequest | None = None, **fields: Any) -> tasks_pb2.StartTaskResponse:
        """Starts a task; `capabilities` may be :class:`Capability` values."""
        if "capabilities" in fields:
            fields["capabilities"] = [c.to_pb() if isinstance(c, Capability) else c for c in fields["capabilities"]]
        return self._unary("/mandate.v1.TaskService/StartTask", self._request(tasks_pb2.StartTaskRequest, request, fields), tasks_pb2.StartTaskResponse)

    def get_task(self, request: tasks_pb2.GetTaskRequest | None = None, **fields: Any) -> tasks_pb2.GetTaskResponse:
        return self._unary("/mandate.v1.TaskService/GetTask", self._request(tasks_pb2.GetTaskRequest, request, fields), tasks_pb2.GetTaskResponse)

    def list_tasks(self, request: tasks_pb2.ListTasksRequest | None = None, **fields: Any) -> tasks_pb2.ListTasksResponse:
        return self._unary("/mandate.v1.TaskService/ListTasks", self._request(tasks_pb2.ListTasksRequest, request, fields), tasks_pb2.ListTasksResponse)

    def complete_task(self, request: tasks_pb2.CompleteTaskRequest | None = None, **fields: Any) -> tasks_pb2.CompleteTaskResponse:
        return self._unary("/mandate.v1.TaskService/CompleteTask", self._request(tasks_pb2.CompleteTaskRequest, request, fields), tasks_pb2.CompleteTaskResponse)

    def fail_task(self, request: tasks_pb2.FailTaskRequest | None = None, **fields: Any) -> tasks_pb2.FailTaskResponse:
        return self._unary("/mandate.v1.TaskService/FailTask", self._request(tasks_pb2.FailTaskRequest, request, fields), tasks_pb2.FailTaskResponse)

    def delegate_raw(self, request: tasks_pb2.DelegateRequest | None = None, **fields: Any) -> tasks_pb2.DelegateResponse:
        return self._unary("/mandate.v1.TaskService/Delegate", self._request(tasks_pb2.DelegateRequest, request, fields), tasks_pb2.DelegateResponse)

    def delegate(self, chain: Chain, signals: Mapping[str, str] | None = None) -> Chain:
        """Registers the leaf of `chain` (built with :func:`mandate.delegate`) and returns
        the chain with it sealed: hand that to the new holder."""
        r = self.delegate_raw(chain=chain.encode(), signals=dict(signals or {}))
        return Chain.decode(r.chain)

    def renew_grant(self, request: tasks_pb2.RenewGrantRequest | None = None, **fields: Any) -> tasks_pb2.RenewGrantResponse:
        return self._unary("/mandate.v1.TaskService/RenewGrant", self._request(tasks_pb2.RenewGrantRequest, request, fields), tasks_pb2.RenewGrantResponse)

    def revoke_link(self, request: tasks_pb2.RevokeLinkRequest | None = None, **fields: Any) -> tasks_pb2.RevokeLinkResponse:
        return self._unary("/mandate.v1.TaskService/RevokeLink", self._request(tasks_pb2.RevokeLinkRequest, request, fields), tasks_pb2.RevokeLinkResponse)

    def get_delegation_tree(self, request: tasks_pb2.GetDelegationTreeRequest | None = None, **fields: Any) -> tasks_pb2.GetDelegationTreeResponse:
        return self._unary("/mandate.v1.TaskService/GetDelegationTree", self._request(tasks_pb2.GetDelegationTreeRequest, request, fields), tasks_pb2.GetDelegationTreeResponse)

    def break_glass(self, request: tasks_pb2.BreakGlassRequest | None = None, **fields: Any) -> tasks_pb2.BreakGlassResponse:
        if "capabilities" in fields:
            fields["capabilities"] = [c.to_pb() if isinstance(c, Capability) else c for c in fields["capabilities"]]
        return self._unary("/mandate.v1.TaskService/BreakGlass", self._request(tasks_pb2.BreakGlassRequest, request, fields), tasks_pb2.BreakGlassResponse)

    # ---- AuthorizationService ----

    def authorize_raw(self, request: authorization_pb2.AuthorizeRequest | None = None, **fields: Any) -> authorization_pb2.AuthorizeResponse:
        return self._unary("/mandate.v1.AuthorizationService/Authorize", self._request(authorization_pb2.AuthorizeRequest, request, fields), authorization_pb2.AuthorizeResponse)

    def authorize(
        self,
        chain: Chain | str | bytes,
        proof: Invocation | str | bytes,
        call: Call,
        *,
        context: Mapping[str, str] | None = None,
        refuse_break_glass: bool = False,
    ) -> authorization_pb2.AuthorizeResponse:
        """Asks the coordinator, as the tool (this client's agent is the audience), whether
        `call` may proceed. A denial is an answer (`allowed` false, `reason` set), not an
        exception."""
        return self.authorize_raw(authorize_request(chain, proof, call, context, refuse_break_glass))

    def authorize_batch_raw(self, request: authorization_pb2.AuthorizeBatchRequest | None = None, **fields: Any) -> authorization_pb2.AuthorizeBatchResponse:
        return self._unary("/mandate.v1.AuthorizationService/AuthorizeBatch", self._request(authorization_pb2.AuthorizeBatchRequest, request, fields), authorization_pb2.AuthorizeBatchResponse)

    def authorize_batch(self, requests: Sequence[authorization_pb2.AuthorizeRequest]) -> list[authorization_pb2.AuthorizeResponse]:
        """Several `Authorize` decisions under one request signature (1 to 256, each made
        with :func:`mandate.client.authorize_request`): one answer each, in order, each
        decided and audited as if asked alone. Invalid input in any refuses them all with
        `INVALID_ARGUMENT` before anything is decided."""
        return list(self.authorize_batch_raw(requests=list(requests)).responses)

    def watch_revocations(self, request: authorization_pb2.WatchRevocationsRequest | None = None, **fields: Any) -> Iterator[authorization_pb2.WatchRevocationsResponse]:
        return self._stream("/mandate.v1.AuthorizationService/WatchRevocations", self._request(authorization_pb2.WatchRevocationsRequest, request, fields), authorization_pb2.WatchRevocationsResponse)

    def get_trust_bundle(self, request: authorization_pb2.GetTrustBundleRequest | None = None, **fields: Any) -> authorization_pb2.GetTrustBundleResponse:
        return self._unary("/mandate.v1.AuthorizationService/GetTrustBundle", self._request(authorization_pb2.GetTrustBundleRequest, request, fields), authorization_pb2.GetTrustBundleResponse)

    def add_coordinator_key(self, request: authorization_pb2.AddCoordinatorKeyRequest | None = None, **fields: Any) -> authorization_pb2.AddCoordinatorKeyResponse:
        return self._unary("/mandate.v1.AuthorizationService/AddCoordinatorKey", self._request(authorization_pb2.AddCoordinatorKeyRequest, request, fields), authorization_pb2.AddCoordinatorKeyResponse)

    def retire_coordinator_key(self, request: authorization_pb2.RetireCoordinatorKeyRequest | None = None, **fields: Any) -> authorization_pb2.RetireCoordinatorKeyResponse:
        return self._unary("/mandate.v1.AuthorizationService/RetireCoordinatorKey", self._request(authorization_pb2.RetireCoordinatorKeyRequest, request, fields), authorization_pb2.RetireCoordinatorKeyResponse)

    def report_decisions(self, request: authorization_pb2.ReportDecisionsRequest | None = None, **fields: Any) -> authorization_pb2.ReportDecisionsResponse:
        return self._unary("/mandate.v1.AuthorizationService/ReportDecisions", self._request(authorization_pb2.ReportDecisionsRequest, request, fields), authorization_pb2.ReportDecisionsResponse)

    # ---- ApprovalService ----

    def list_approvals(self, request: approvals_pb2.ListApprovalsRequest | None = None, **fields: Any) -> approvals_pb2.ListApprovalsResponse:
        return self._unary("/mandate.v1.ApprovalService/ListApprovals", self._request(approvals_pb2.ListApprovalsRequest, request, fields), approvals_pb2.ListApprovalsResponse)

    def get_approval(self, request: approvals_pb2.GetApprovalRequest | None = None, **fields: Any) -> approvals_pb2.GetApprovalResponse:
        return self._unary("/mandate.v1.ApprovalService/GetApproval", self._request(approvals_pb2.GetApprovalRequest, request, fields), approvals_pb2.GetApprovalResponse)

    def approve(self, request: approvals_pb2.ApproveRequest | None = None, **fields: Any) -> approvals_pb2.ApproveResponse:
        return self._unary("/mandate.v1.ApprovalService/Approve", self._request(approvals_pb2.ApproveRequest, request, fields), approvals_pb2.ApproveResponse)

    def deny(self, request: approvals_pb2.DenyRequest | None = None, **fields: Any) -> approvals_pb2.DenyResponse:
        return self._unary("/mandate.v1.ApprovalService/Deny", self._request(approvals_pb2.DenyRequest, request, fields), approvals_pb2.DenyResponse)

    def wait_approval(self, request: approvals_pb2.WaitApprovalRequest | None = None, **fields: Any) -> Iterator[approvals_pb2.WaitApprovalResponse]:
        return self._stream("/mandate.v1.ApprovalService/WaitApproval", self._request(approvals_pb2.WaitApprovalRequest, request, fields), approvals_pb2.WaitApprovalResponse)

    # ---- AuditService ----

    def query_audit_log(self, request: audit_pb2.QueryAuditLogRequest | None = None, **fields: Any) -> audit_pb2.QueryAuditLogResponse:
        return self._unary("/mandate.v1.AuditService/QueryAuditLog", self._request(audit_pb2.QueryAuditLogRequest, request, fields), audit_pb2.QueryAuditLogResponse)

    def watch_audit_log(self, request: audit_pb2.WatchAuditLogRequest | None = None, **fields: Any) -> Iterator[audit_pb2.WatchAuditLogResponse]:
        return self._stream("/mandate.v1.AuditService/WatchAuditLog", self._request(audit_pb2.WatchAuditLogRequest, request, fields), audit_pb2.WatchAuditLogResponse)

    def verify_audit_log(self, request: audit_pb2.VerifyAuditLogRequest | None = None, **fields: Any) -> audit_pb2.VerifyAuditLogResponse:
        return self._unary("/mandate.v1.AuditService/VerifyAuditLog", self._request(audit_pb2.VerifyAuditLogRequest, request, fields), audit_pb2.VerifyAuditLogResponse)

    def export_audit_log(self, request: audit_pb2.ExportAuditLogRequest | None = None, **fields: Any) -> Iterator[audit_pb2.ExportAuditLogResponse]:
        return self._stream("/mandate.v1.AuditService/ExportAuditLog", self._request(audit_pb2.ExportAuditLogRequest, request, fields), audit_pb2.ExportAuditLogResponse)

    def checkpoint_audit_log(self, request: audit_pb2.CheckpointAuditLogRequest | None = None, **fields: Any) -> audit_pb2.CheckpointAuditLogResponse:
        return self._unary("/mandate.v1.AuditService/CheckpointAuditLog", self._request(audit_pb2.CheckpointAuditLogRequest, request, fields), audit_pb2.CheckpointAuditLogResponse)

    def prune_audit_log(self, request: audit_pb2.PruneAuditLogRequest | None = None, **fields: Any) -> audit_pb2.PruneAuditLogResponse:
        return self._unary("/mandate.v1.AuditService/PruneAuditLog", self._request(audit_pb2.PruneAuditLogRequest, request, fields), audit_pb2.PruneAuditLogResponse)

    # ---- PolicyService ----

    def get_policy(self, request: policy_pb2.GetPolicyRequest | None = None, **fields: Any) -> policy_pb2.GetPolicyResponse:
        return self._unary("/mandate.v1.PolicyService/GetPolicy", self._request(policy_pb2.GetPolicyRequest, request, fields), policy_pb2.GetPolicyResponse)

    def reload_policy(self, request: policy_pb2.ReloadPolicyRequest | None = None, **fields: Any) -> policy_pb2.ReloadPolicyResponse:
        return self._unary("/mandate.v1.PolicyService/ReloadPolicy", self._request(policy_pb2.ReloadPolicyRequest, request, fields), policy_pb2.ReloadPolicyResponse)

    # ---- AccessService ----

    def who_can(self, request: access_pb2.WhoCanRequest | None = None, **fields: Any) -> access_pb2.WhoCanResponse:
        return self._unary("/mandate.v1.AccessService/WhoCan", self._request(access_pb2.WhoCanRequest, request, fields), access_pb2.WhoCanResponse)

    def list_live_authority(self, request: access_pb2.ListLiveAuthorityRequest | None = None, **fields: Any) -> access_pb2.ListLiveAuthorityResponse:
        return self._unary("/mandate.v1.AccessService/ListLiveAuthority", self._request(access_pb2.ListLiveAuthorityRequest, request, fields), access_pb2.ListLiveAuthorityResponse)

    def exposure_report(self, request: access_pb2.ExposureReportRequest | None = None, **fields: Any) -> access_pb2.ExposureReportResponse:
        return self._unary("/mandate.v1.AccessService/ExposureReport", self._request(access_pb2.ExposureReportRequest, request, fields), access_pb2.ExposureReportResponse)


RPCS: dict[str, tuple[str, type[Message], type[Message], bool]] = {
    "register_agent": ("/mandate.v1.AgentService/RegisterAgent", agents_pb2.RegisterAgentRequest, agents_pb2.RegisterAgentResponse, False),
    "get_agent": ("/mandate.v1.AgentService/GetAgent", agents_pb2.GetAgentRequest, agents_pb2.GetAgentResponse, False),
    "list_agents": ("/mandate.v1.AgentService/ListAgents", agents_pb2.ListAgentsRequest, agents_pb2.ListAgentsResponse, False),
    "disable_agent": ("/mandate.v1.AgentService/DisableAgent", agents_pb2.DisableAgentRequest, agents_pb2.DisableAgentResponse, False),
    "start_task": ("/mandate.v1.TaskService/StartTask", tasks_pb2.StartTaskRequest, tasks_pb2.StartTaskResponse, False),
    "get_task": ("/mandate.v1.TaskService/GetTask", tasks_pb2.GetTaskRequest, tasks_pb2.GetTaskResponse, False),
    "list_tasks": ("/mandate.v1.TaskService/ListTasks", tasks_pb2.ListTasksRequest, tasks_pb2.ListTasksResponse, False),
    "complete_task": ("/mandate.v1.TaskService/CompleteTask", tasks_pb2.CompleteTaskRequest, tasks_pb2.CompleteTaskResponse, False),
    "fail_task": ("/mandate.v1.TaskService/FailTask", tasks_pb2.FailTaskRequest, tasks_pb2.FailTaskResponse, False),
    "delegate_raw": ("/mandate.v1.TaskService/Delegate", tasks_pb2.DelegateRequest, tasks_pb2.DelegateResponse, False),
    "renew_grant": ("/mandate.v1.TaskService/RenewGrant", tasks_pb2.RenewGrantRequest, tasks_pb2.RenewGrantResponse, False),
    "revoke_link": ("/mandate.v1.TaskService/RevokeLink", tasks_pb2.RevokeLinkRequest, tasks_pb2.RevokeLinkResponse, False),
    "get_delegation_tree": ("/mandate.v1.TaskService/GetDelegationTree", tasks_pb2.GetDelegationTreeRequest, tasks_pb2.GetDelegationTreeResponse, False),
    "break_glass": ("/mandate.v1.TaskService/BreakGlass", tasks_pb2.BreakGlassRequest, tasks_pb2.BreakGlassResponse, False),
    "authorize_raw": ("/mandate.v1.AuthorizationService/Authorize", authorization_pb2.AuthorizeRequest, authorization_pb2.AuthorizeResponse, False),
    "authorize_batch_raw": ("/mandate.v1.AuthorizationService/AuthorizeBatch", authorization_pb2.AuthorizeBatchRequest, authorization_pb2.AuthorizeBatchResponse, False),
    "watch_revocations": ("/mandate.v1.AuthorizationService/WatchRevocations", authorization_pb2.WatchRevocationsRequest, authorization_pb2.WatchRevocationsResponse, True),
    "get_trust_bundle": ("/mandate.v1.AuthorizationService/GetTrustBundle", authorization_pb2.GetTrustBundleRequest, authorization_pb2.GetTrustBundleResponse, False),
    "add_coordinator_key": ("/mandate.v1.AuthorizationService/AddCoordinatorKey", authorization_pb2.AddCoordinatorKeyRequest, authorization_pb2.AddCoordinatorKeyResponse, False),
    "retire_coordinator_key": ("/mandate.v1.AuthorizationService/RetireCoordinatorKey", authorization_pb2.RetireCoordinatorKeyRequest, authorization_pb2.RetireCoordinatorKeyResponse, False),
    "report_decisions": ("/mandate.v1.AuthorizationService/ReportDecisions", authorization_pb2.ReportDecisionsRequest, authorization_pb2.ReportDecisionsResponse, False),
    "list_approvals": ("/mandate.v1.ApprovalService/ListApprovals", approvals_pb2.ListApprovalsRequest, approvals_pb2.ListApprovalsResponse, False),
    "get_approval": ("/mandate.v1.ApprovalService/GetApproval", approvals_pb2.GetApprovalRequest, approvals_pb2.GetApprovalResponse, False),
    "approve": ("/mandate.v1.ApprovalService/Approve", approvals_pb2.ApproveRequest, approvals_pb2.ApproveResponse, False),
    "deny": ("/mandate.v1.ApprovalService/Deny", approvals_pb2.DenyRequest, approvals_pb2.DenyResponse, False),
    "wait_approval": ("/mandate.v1.ApprovalService/WaitApproval", approvals_pb2.WaitApprovalRequest, approvals_pb2.WaitApprovalResponse, True),
    "query_audit_log": ("/mandate.v1.AuditService/QueryAuditLog", audit_pb2.QueryAuditLogRequest, audit_pb2.QueryAuditLogResponse, False),
    "watch_audit_log": ("/mandate.v1.AuditService/WatchAuditLog", audit_pb2.WatchAuditLogRequest, audit_pb2.WatchAuditLogResponse, True),
    "verify_audit_log": ("/mandate.v1.AuditService/VerifyAuditLog", audit_pb2.VerifyAuditLogRequest, audit_pb2.VerifyAuditLogResponse, False),
    "export_audit_log": ("/mandate.v1.AuditService/ExportAuditLog", audit_pb2.ExportAuditLogRequest, audit_pb2.ExportAuditLogResponse, True),
    "checkpoint_audit_log": ("/mandate.v1.AuditService/CheckpointAuditLog", audit_pb2.CheckpointAuditLogRequest, audit_pb2.CheckpointAuditLogResponse, False),
    "prune_audit_log": ("/mandate.v1.AuditService/PruneAuditLog", audit_pb2.PruneAuditLogRequest, audit_pb2.PruneAuditLogResponse, False),
    "get_policy": ("/mandate.v1.PolicyService/GetPolicy", policy_pb2.GetPolicyRequest, policy_pb2.GetPolicyResponse, False),
    "reload_policy": ("/mandate.v1.PolicyService/ReloadPolicy", policy_pb2.ReloadPolicyRequest, policy_pb2.ReloadPolicyResponse, False),
    "who_can": ("/mandate.v1.AccessService/WhoCan", access_pb2.WhoCanRequest, access_pb2.WhoCanResponse, False),
    "list_live_authority": ("/mandate.v1.AccessService/ListLiveAuthority", access_pb2.ListLiveAuthorityRequest, access_pb2.ListLiveAuthorityResponse, False),
    "exposure_report": ("/mandate.v1.AccessService/ExposureReport", access_pb2.ExposureReportRequest, access_pb2.ExposureReportResponse, False),
}
"""Every `mandate.v1` RPC: Python method name → (path, request type, response type, server
streaming). Both clients have one method per entry (a test checks the table against the
proto descriptors and the sync methods against the table)."""


class _Current:
    """The call a stream is reading now (it may move to another coordinator)."""

    stream: Any = None

    def cancel(self) -> None:
        if self.stream is not None:
            self.stream.cancel()


class _Stream(Iterator[R]):
    """A server stream: iterate it; `cancel()` ends it."""

    def __init__(self, messages: Iterator[R], call: Any) -> None:
        self._messages = messages
        self._call = call

    def __iter__(self) -> "_Stream[R]":
        return self

    def __next__(self) -> R:
        return next(self._messages)

    def cancel(self) -> None:
        self._call.cancel()


def authorize_request(
    chain: Chain | str | bytes,
    proof: Invocation | str | bytes,
    call: Call,
    context: Mapping[str, str] | None,
    refuse_break_glass: bool,
) -> authorization_pb2.AuthorizeRequest:
    """The `Authorize` request for `call` under `chain` with `proof` (each decoded first, so
    a malformed one fails here with its reason)."""
    return authorization_pb2.AuthorizeRequest(
        chain=chain.encode() if isinstance(chain, Chain) else Chain.parse(chain).encode(),
        invocation=proof.encode() if isinstance(proof, Invocation) else Invocation.parse(proof).encode(),
        action=call.action,
        resource=call.resource,
        args=call.args_to_pb(),
        context=dict(context or {}),
        refuse_break_glass=refuse_break_glass,
    )


def capabilities_pb(caps: Sequence[Capability]) -> list[Any]:
    """Capabilities in wire form."""
    return [c.to_pb() for c in caps]
