"""The coordinator from asyncio: :class:`AsyncClient` (on `grpc.aio`) has a coroutine for
every method of :class:`mandate.Client`, with the same arguments and results; streams are
async iterators."""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Mapping, Sequence

import grpc
from google.protobuf.message import Message

from mandate._proto.mandate.v1 import authorization_pb2
from mandate.client import (
    _CHANNEL_OPTIONS,
    RPCS,
    Signer,
    _target,
    authorize_request,
    servers,
    tls_credentials,
    unreachable,
)
from mandate.errors import from_rpc_error
from mandate.token import Call, Capability, Chain, Invocation


class AsyncClient:
    """A signed asyncio client of every `mandate.v1` service (see :class:`mandate.Client`).

    ::

        async with AsyncClient(address, signer) as c:
            task = await c.start_task(capabilities=[...], ttl_ms=60_000)
    """

    def __init__(
        self,
        server: str,
        signer: Signer,
        *,
        timeout: float | None = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.server = server
        self.signer = signer
        self.timeout = timeout
        self.channels: list[grpc.aio.Channel] = []
        for address in servers(server):
            creds = tls_credentials(address, ca_file, cert_file, key_file)
            if creds is None:
                self.channels.append(grpc.aio.insecure_channel(_target(address), options=_CHANNEL_OPTIONS))
            else:
                self.channels.append(grpc.aio.secure_channel(_target(address), creds, options=_CHANNEL_OPTIONS))
        self._current = 0

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel calls go to now (see :class:`mandate.Client` for failing over)."""
        return self.channels[self._current]

    def _fail_over(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.channels)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _unary(self, path: str, request: Message, response: type[Message]) -> Any:
        body = request.SerializeToString()
        metadata = self.signer.metadata(path, body)
        for attempt in range(len(self.channels)):
            index = self._current
            call = self.channels[index].unary_unary(
                path, request_serializer=lambda b: b, response_deserializer=response.FromString
            )
            try:
                return await call(body, metadata=metadata, timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                if attempt + 1 < len(self.channels) and unreachable(e):
                    self._fail_over(index)
                    continue
                raise from_rpc_error(e) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _stream(self, path: str, request: Message, response: type[Message]) -> AsyncIterator[Any]:
        body = request.SerializeToString()
        metadata = self.signer.metadata(path, body)
        for attempt in range(len(self.channels)):
            index = self._current
            call = self.channels[index].unary_stream(
                path, request_serializer=lambda b: b, response_deserializer=response.FromString
            )
            stream = call(body, metadata=metadata)
            received = False
            try:
                async for message in stream:
                    received = True
                    yield message
                return
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.CANCELLED:
                    return
                if not received and attempt + 1 < len(self.channels) and unreachable(e):
                    self._fail_over(index)
                    continue
                raise from_rpc_error(e) from None

    async def delegate(self, chain: Chain, signals: Mapping[str, str] | None = None) -> Chain:
        """Registers and seals the leaf of `chain` (see :meth:`mandate.Client.delegate`)."""
        r = await self.delegate_raw(chain=chain.encode(), signals=dict(signals or {}))  # type: ignore[attr-defined]
        return Chain.decode(r.chain)

    async def authorize(
        self,
        chain: Chain | str | bytes,
        proof: Invocation | str | bytes,
        call: Call,
        *,
        context: Mapping[str, str] | None = None,
        refuse_break_glass: bool = False,
    ) -> authorization_pb2.AuthorizeResponse:
        """Asks, as the tool, whether `call` may proceed (see :meth:`mandate.Client.authorize`)."""
        request = authorize_request(chain, proof, call, context, refuse_break_glass)
        return await self.authorize_raw(request)  # type: ignore[attr-defined,no-any-return]

    async def authorize_batch(self, requests: Sequence[authorization_pb2.AuthorizeRequest]) -> list[authorization_pb2.AuthorizeResponse]:
        """Several decisions under one request signature (see :meth:`mandate.Client.authorize_batch`)."""
        r = await self.authorize_batch_raw(requests=list(requests))  # type: ignore[attr-defined]
        return list(r.responses)


def _method(name: str, path: str, request_type: type[Message], response_type: type[Message], stream: bool) -> Any:
    def build(request: Message | None, fields: dict[str, Any]) -> Message:
        if request is not None and fields:
            raise TypeError("pass the request message or its fields, not both")
        if "capabilities" in fields:
            fields["capabilities"] = [c.to_pb() if isinstance(c, Capability) else c for c in fields["capabilities"]]
        return request if request is not None else request_type(**fields)

    if stream:
        def streaming(self: AsyncClient, request: Message | None = None, **fields: Any) -> AsyncIterator[Any]:
            return self._stream(path, build(request, fields), response_type)

        fn: Any = streaming
    else:
        async def unary(self: AsyncClient, request: Message | None = None, **fields: Any) -> Any:
            return await self._unary(path, build(request, fields), response_type)

        fn = unary
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`{path}` (see :meth:`mandate.Client.{name}`)."
    return fn


for _name, (_path, _req, _resp, _stream) in RPCS.items():
    setattr(AsyncClient, _name, _method(_name, _path, _req, _resp, _stream))
