"""The one exception services raise for a request they cannot take: it ends the RPC with a status."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """Ends one RPC with ``code`` and ``message`` (a message that says what to fix); nothing else is affected."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)
