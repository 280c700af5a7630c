"""How arguments and results become Payloads: JSON by default, as the TS client does."""
from __future__ import annotations

import json
from typing import Any, Protocol

from reprise.v1 import types_pb2

JSON = "application/json"


class Codec(Protocol):
    def encode(self, value: Any) -> types_pb2.Payload: ...

    def decode(self, payload: types_pb2.Payload) -> Any: ...


class JsonCodec:
    """Encodes values as compact UTF-8 JSON.

    Decoding is lenient about what other clients send: an empty payload is
    None, JSON (or an unlabelled payload) is parsed, and any other content
    type is handed over as raw bytes rather than guessed at.
    """

    def encode(self, value: Any) -> types_pb2.Payload:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return types_pb2.Payload(data=data.encode("utf-8"), content_type=JSON)

    def decode(self, payload: types_pb2.Payload) -> Any:
        if not payload.data:
            return None
        content_type = payload.content_type.split(";", 1)[0].strip().lower()
        if content_type in ("", JSON) or content_type.endswith("+json"):
            return json.loads(payload.data.decode("utf-8"))
        return bytes(payload.data)
