"""TEST DOUBLE, not E2B: the Connect protocol as envd speaks it, written from its spec.

Connect (connectrpc.com/docs/protocol) over HTTP/1.1 with the JSON codec, which is what
the E2B SDK sends envd: a unary call is one JSON body each way, errors as a JSON
``{"code", "message"}`` with a matching HTTP status; a server stream's request and
responses are envelopes (one flags byte, a 4-byte big-endian length, the JSON message),
and the last envelope has flag 0x02 and carries ``{}`` or ``{"error": {...}}``.
Field names are protobuf JSON names (camelCase); ``bytes`` fields are base64.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

END_STREAM = 0x02
_HEADER = struct.Struct(">BI")
# Connect error codes and the HTTP statuses the protocol maps them to (unary calls)
HTTP_STATUS = {"not_found": 404, "invalid_argument": 400, "unavailable": 503,
               "internal": 500, "unimplemented": 501, "resource_exhausted": 429,
               "deadline_exceeded": 504}


def read_body(headers: Any, stream: IO[bytes]) -> bytes:
    """A request body sent with Content-Length or chunked transfer encoding."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while stream.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += stream.read(size)
            stream.readline()
    return stream.read(int(headers.get("Content-Length") or 0))


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return _HEADER.pack(flags, len(data)) + data


def first_message(body: bytes) -> dict[str, Any]:
    """The single request message of a server-streaming call."""
    _flags, length = _HEADER.unpack_from(body)
    message: dict[str, Any] = json.loads(body[_HEADER.size:_HEADER.size + length])
    return message


def end_of_stream(code: str | None = None, message: str = "") -> bytes:
    payload: dict[str, Any] = {} if code is None else {
        "error": {"code": code, "message": message}}
    return envelope(payload, END_STREAM)


def error_body(code: str, message: str) -> tuple[int, bytes]:
    """The HTTP status and body of a unary call's error."""
    return HTTP_STATUS.get(code, 500), json.dumps({"code": code, "message": message}).encode()
