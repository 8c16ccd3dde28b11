"""Errors: every failed call raises a :class:`MandateError` carrying the stable reason code
(the `ErrorInfo` reason the coordinator sends) and its message."""

from __future__ import annotations

import grpc


class MandateError(Exception):
    """A refused or failed call. `reason` is the stable code (e.g. `POLICY_DENIED`), `code`
    the gRPC status code when the coordinator answered."""

    def __init__(self, reason: str, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(f"{reason}: {message}" if reason else message)
        self.reason = reason
        self.message = message
        self.code = code


class InvalidArgument(MandateError):
    """Bad input (`INVALID_ARGUMENT`); nothing changed."""


class Unauthenticated(MandateError):
    """The request's signature, time or nonce was refused (`UNAUTHENTICATED`)."""


class Denied(MandateError):
    """The caller may not do this, or policy refused it (`PERMISSION_DENIED`)."""


class NotFound(MandateError):
    """No such agent, task or link."""


class AlreadyExists(MandateError):
    """The agent or link is already registered."""


class FailedPrecondition(MandateError):
    """The request does not fit the current state (task ended, approval decided, ...)."""


class ResourceExhausted(MandateError):
    """A quota or rate limit is used up."""


class Aborted(MandateError):
    """Another coordinator changed the state first; retry with a new request."""


class Unavailable(MandateError):
    """The coordinator or its store is unavailable."""


class Internal(MandateError):
    """The coordinator failed unexpectedly."""


class KeyFileError(MandateError):
    """A key file or key text could not be used (the message says why, never the key)."""

    def __init__(self, message: str) -> None:
        super().__init__("KEY_FILE", message)


_BY_CODE: dict[grpc.StatusCode, type[MandateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Denied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INTERNAL: Internal,
}


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """The top-level fields of a protobuf message: (number, wire type, value)."""
    out: list[tuple[int, int, bytes | int]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, wire, varint()))
        elif wire == 2:
            n = varint()
            out.append((number, wire, data[i : i + n]))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unsupported wire type")
    return out


ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def reason_of(details: bytes) -> str:
    """The `ErrorInfo` reason in an encoded `google.rpc.Status` (docs/PROTOCOL.md lists the
    fields), or an empty string."""
    try:
        for number, _, value in _fields(details):
            if number != 3 or not isinstance(value, bytes):
                continue
            any_fields = {n: v for n, _, v in _fields(value)}
            if any_fields.get(1) == ERROR_INFO_TYPE.encode():
                info = {n: v for n, _, v in _fields(bytes(any_fields.get(2, b"")))}  # type: ignore[arg-type]
                reason = info.get(1, b"")
                return reason.decode() if isinstance(reason, bytes) else ""
    except (IndexError, ValueError, UnicodeDecodeError):
        return ""
    return ""


def from_rpc_error(e: grpc.RpcError) -> MandateError:
    """The exception for a failed call, with the reason decoded from the status details."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    message = e.details() if hasattr(e, "details") else str(e)  # type: ignore[attr-defined]
    reason = ""
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None  # type: ignore[attr-defined]
    for key, value in trailers or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            reason = reason_of(value)
    cls = _BY_CODE.get(code, MandateError)
    return cls(reason, message or "", code)
