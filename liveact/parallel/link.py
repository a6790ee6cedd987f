"""The control link between a generator's rank 0 and one of its worker ranks: framed messages on a socket.

A message is a JSON header (``op``, ``handle``, small fields) plus named tensors packed with
safetensors (``liveact.state.codec``; never pickle: a worker executes what rank 0 sends, so the
wire format must not be able to carry code)::

    <u32 header bytes> <u64 payload bytes> <header: UTF-8 JSON> <payload: safetensors or empty>

The link is the only thing a worker blocks on while idle. Collectives (the DiT's all-reduces) run
only inside an operation every rank is executing, so an idle session never holds a collective open
and never trips its timeout.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import torch

from liveact.state.codec import pack, unpack

__all__ = ["Link", "LinkClosed", "Message"]

_PREFIX = struct.Struct("<IQ")  # header length, payload length
MAX_HEADER_BYTES = 1 << 20  # a header is a few hundred bytes; anything bigger is a broken stream


class LinkClosed(ConnectionError):
    """The peer closed the link (its process ended)."""


@dataclass
class Message:
    op: str
    handle: int = -1  # the session's handle on every rank (-1: not about a session)
    fields: dict[str, Any] = field(default_factory=dict)  # small JSON values (errors, chunk index, ...)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


class Link:
    """One end of a connected stream socket (blocking)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def from_fd(cls, fd: int) -> Link:
        return cls(socket.socket(fileno=fd))

    def send(self, msg: Message) -> None:
        header = json.dumps({"op": msg.op, "handle": msg.handle, "fields": msg.fields}).encode()
        payload = pack(msg.tensors) if msg.tensors else b""
        self.sock.sendall(_PREFIX.pack(len(header), len(payload)) + header)
        if payload:
            self.sock.sendall(payload)

    def recv(self) -> Message:
        n_header, n_payload = _PREFIX.unpack(self._exactly(_PREFIX.size))
        if n_header > MAX_HEADER_BYTES:
            raise ConnectionError(f"control link: a {n_header}-byte header is not a LiveAct message")
        head = json.loads(self._exactly(n_header))
        tensors = unpack(self._exactly(n_payload)) if n_payload else {}
        return Message(head["op"], int(head["handle"]), head.get("fields", {}), tensors)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise LinkClosed("the peer closed the control link")
            got += k
        return buf
