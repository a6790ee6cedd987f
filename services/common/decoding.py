"""Undecodable request bytes get INVALID_ARGUMENT, not the framework's UNKNOWN or INTERNAL.

gRPC deserializes each request before a handler sees it; bytes that are not a valid message of
the method's request type make the deserializer raise inside the framework (or inside the
handler's ``async for``, where a handler's own catch-all would report INTERNAL). This interceptor
gives every method a deserializer that returns an ``Undecodable`` marker instead, and checks for
it before the handler: a unary request is refused with INVALID_ARGUMENT, a streamed one raises
``RequestError`` (INVALID_ARGUMENT) from the request iterator, which every servicer already turns
into its status. The message names the type and the request's position; it never echoes the bytes.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from services.common.errors import RequestError

__all__ = ["RequestDecodingGuard", "Undecodable"]


@dataclass(frozen=True)
class Undecodable:
    type_name: str
    error: str


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    message_class = getattr(deserializer, "__self__", None)  # generated stubs pass Message.FromString
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", "request")


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    type_name = _type_name(deserializer)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a custom deserializer raises
            return Undecodable(type_name, type(exc).__name__)

    return deserialize


def _refusal(bad: Undecodable, position: int | None = None) -> RequestError:
    where = "the request" if position is None else f"request {position} of the stream"
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{where} is not a valid {bad.type_name} message ({bad.error}): send {bad.type_name} messages "
        "serialized by protobuf",
    )


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    position = 0
    async for request in requests:
        if isinstance(request, Undecodable):
            raise _refusal(request, position)
        yield request
        position += 1


def _is_async(handler: grpc.RpcMethodHandler) -> bool:
    behaviour = handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


class RequestDecodingGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None or not _is_async(handler):
            return handler  # not ours to wrap: a synchronous handler keeps the framework's behaviour
        safe = _safe(handler.request_deserializer)
        if handler.request_streaming and handler.response_streaming:
            return handler._replace(request_deserializer=safe, stream_stream=_streamed(handler.stream_stream))
        if handler.request_streaming:
            return handler._replace(request_deserializer=safe, stream_unary=_streamed(handler.stream_unary))
        if handler.response_streaming:
            return handler._replace(request_deserializer=safe, unary_stream=_unary(handler.unary_stream))
        return handler._replace(request_deserializer=safe, unary_unary=_unary(handler.unary_unary))


def _streamed(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A request-streaming behaviour whose requests are checked as they are read. Its own shape is
    kept: an async generator yields responses, a coroutine returns one or writes with ``context``."""
    if inspect.isasyncgenfunction(behaviour):

        async def generator(requests, context):
            async for response in behaviour(_checked(requests), context):
                yield response

        return generator

    async def coroutine(requests, context):
        return await behaviour(_checked(requests), context)

    return coroutine


def _unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A unary-request behaviour that refuses an undecodable request before it runs (same shape)."""

    async def refuse(request, context) -> None:
        if isinstance(request, Undecodable):
            error = _refusal(request)
            await context.abort(error.code, error.message)

    if inspect.isasyncgenfunction(behaviour):

        async def generator(request, context):
            await refuse(request, context)
            async for response in behaviour(request, context):
                yield response

        return generator

    async def coroutine(request, context):
        await refuse(request, context)
        return await behaviour(request, context)

    return coroutine
