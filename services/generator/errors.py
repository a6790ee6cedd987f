"""The gRPC statuses a generator session ends with when something other than the client fails."""

from __future__ import annotations

import grpc

from services.common.errors import RequestError

__all__ = ["fenced", "lost_rank", "peer_error"]


def fenced() -> RequestError:
    """ABORTED: another generator resumed this session (its lease has a newer fencing token)."""
    return RequestError(
        grpc.StatusCode.ABORTED,
        "another generator took this session over (its lease has a newer fencing token): continue on the stream "
        "that resumed it",
    )


def lost_rank(why: object) -> RequestError:
    """UNAVAILABLE for a session (or a session start) on a generator whose tensor-parallel ranks failed."""
    return RequestError(
        grpc.StatusCode.UNAVAILABLE,
        f"this generator lost a tensor-parallel rank ({why}): resume the session on another replica",
    )


def peer_error(peer: str, exc: grpc.aio.AioRpcError) -> RequestError:
    """A peer stream failed: the client's input refused passes through, anything else is UNAVAILABLE."""
    code = exc.code()
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return RequestError(code, f"{peer}: {exc.details()}")
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{peer} unavailable ({code.name}: {exc.details()}): retry")
