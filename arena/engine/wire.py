"""What crosses the pipe between the referee and an agent process: JSON and raw tensor bytes, never pickle.

``multiprocessing.Connection.send``/``recv`` pickle, and unpickling runs code
the sender chose (``__reduce__``): an agent whose trojan notes or defender
category carried such an object ran its own code in the referee. Here a
message is one frame,

    8 bytes: length of the header (little-endian) | header: UTF-8 JSON | buffers, back to back

where the JSON holds plain values and tagged references, and every tensor is a
raw buffer described in the header by dtype and shape. Decoding builds only
what the receiver allows: plain JSON values, tensors of the listed dtypes
(``torch.frombuffer`` over a private copy of the bytes), tuples, generators
(their state bytes) and instances of the dataclasses named in ``allowed``,
built from exactly their own fields. Nothing else is ever constructed, so a
``str`` subclass or an object with ``__reduce__`` cannot survive the trip.

Models cross as architecture spec (plain data) plus state dict (tensors); the
receiving side rebuilds them from the architecture registry
(``arena.plugins.build_architecture``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 64 * 2**20  # bytes of JSON in one message
MAX_STRING = 1_000_000  # characters in one string
MAX_DEPTH = 64  # nesting of lists, dicts and dataclasses
# Characters no string on the wire may carry: C0 and C1 controls but tab and newline (terminal escapes:
# an agent's text is printed by `arena match` and stored for reports) and the invisible bidirectional
# and zero-width marks that make text read other than it is ("Trojan Source"), and lone surrogates
# (JSON's "\ud800" escape decodes to one): no encoding can print or store them, so the referee's own
# print of an agent's reason would fail, and the match end as the referee's error.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
                     "\ud800-\udfff]")
_LEN = struct.Struct("<Q")


class WireError(ValueError):
    """A message that breaks the format: the side that sent it forfeits."""


# --- encoding -------------------------------------------------------------------------------------------

def encode(value: Any, model_spec: Callable[[nn.Module], dict[str, Any]] | None = None) -> bytes:
    """One frame for ``value`` (plain values, tensors, tuples, generators, dataclasses, models with a
    ``.spec``). Anything else raises ``TypeError``: a type the format does not know is a bug on the
    sending side, not something to pickle quietly."""
    buffers: list[bytes] = []
    specs: list[dict[str, Any]] = []

    def tensor(t: torch.Tensor) -> dict[str, int]:
        t = t.detach().to("cpu").contiguous()
        if t.dtype not in _NAMES:
            raise TypeError(f"tensor dtype {t.dtype} cannot cross the wire")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        specs.append({"dtype": _NAMES[t.dtype], "shape": list(t.shape), "nbytes": len(raw)})
        buffers.append(raw)
        return {"$t": len(specs) - 1}

    def walk(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            # Plain types only: a subclass (of str, say) is sent as its plain value.
            return v if type(v) in (bool, int, float, str, type(None)) else _plain_scalar(v)
        if isinstance(v, torch.Tensor):
            return tensor(v)
        if isinstance(v, torch.Generator):
            return {"$gen": tensor(v.get_state())["$t"]}
        if isinstance(v, torch.device):
            return {"$device": str(v)}
        if isinstance(v, nn.Module):
            spec = getattr(v, "spec", None)
            if spec is None or not hasattr(spec, "to_dict"):
                raise TypeError(f"a {type(v).__name__} without an architecture spec cannot cross the wire")
            return {"$model": {"arch": walk(spec.to_dict()),
                               "state": {k: tensor(t) for k, t in v.state_dict().items()}}}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = {f.name: walk(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
            return {"$dc": type(v).__name__, "f": fields}
        if isinstance(v, tuple):
            return {"$tuple": [walk(x) for x in v]}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise TypeError(f"dict key {k!r} is not a string")
                out[str(k)] = walk(x)
            return out
        raise TypeError(f"a {type(v).__name__} cannot cross the wire")

    header = json.dumps({"v": walk(value), "b": specs}, separators=(",", ":")).encode()
    return _LEN.pack(len(header)) + header + b"".join(buffers)


def _plain_scalar(v: Any) -> Any:
    for t in (bool, int, float, str):
        if isinstance(v, t):
            return t(v)
    return None


# --- decoding -------------------------------------------------------------------------------------------

def decode(frame: bytes, allowed: Mapping[str, type] = {},
           build_model: Callable[[dict[str, Any], dict[str, torch.Tensor]], nn.Module] | None = None) -> Any:
    """The value of one frame. Dataclasses must be named in ``allowed``; models are rebuilt with
    ``build_model(arch, state)`` (refused when it is None). Raises ``WireError`` on anything else.

    Whatever fails while reading a frame is the sender's: a parser's own limits (an integer of
    thousands of digits, nesting past the recursion limit), a shape torch refuses, a model the
    registry cannot build. Any other exception would end the match as the referee's error,
    which no rating counts: a side about to lose could erase its loss with one bad frame."""
    try:
        return _decode(frame, allowed, build_model)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above: never the referee's error
        raise WireError(f"unreadable message ({type(exc).__name__}: {str(exc)[:200]})") from None


def _decode(frame: bytes, allowed: Mapping[str, type],
            build_model: Callable[[dict[str, Any], dict[str, torch.Tensor]], nn.Module] | None) -> Any:
    if len(frame) < _LEN.size:
        raise WireError("message shorter than its header length")
    (n,) = _LEN.unpack_from(frame)
    if n > MAX_HEADER or _LEN.size + n > len(frame):
        raise WireError(f"header of {n} bytes does not fit the message or the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(frame[_LEN.size:_LEN.size + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"v", "b"} or not isinstance(header["b"], list):
        raise WireError("header must be an object with keys 'v' and 'b'")
    tensors = _tensors(header["b"], memoryview(frame)[_LEN.size + n:])
    used: set[int] = set()

    def take(i: Any) -> torch.Tensor:
        if type(i) is not int or not 0 <= i < len(tensors) or i in used:
            raise WireError(f"bad or repeated tensor reference {i!r}")
        used.add(i)
        return tensors[i]

    def text(v: str) -> str:
        if len(v) > MAX_STRING:
            raise WireError(f"a string of {len(v)} characters (limit {MAX_STRING})")
        if (bad := CONTROL.search(v)) is not None:
            raise WireError(f"a string with the control character U+{ord(bad.group()):04X}")
        return v

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"nested deeper than {MAX_DEPTH}")
        if isinstance(v, str):
            return text(v)
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            raise WireError(f"unexpected JSON value {type(v).__name__}")
        tag = next((k for k in v if k.startswith("$")), None)
        if tag is None:
            return {text(k): walk(x, depth + 1) for k, x in v.items()}
        if len(v) != (2 if tag == "$dc" else 1):
            raise WireError(f"malformed {tag} object")
        if tag == "$t":
            return take(v["$t"])
        if tag == "$gen":
            g = torch.Generator()
            try:
                g.set_state(take(v["$gen"]))
            except (RuntimeError, TypeError) as exc:
                raise WireError(f"bad generator state: {exc}") from None
            return g
        if tag == "$device":
            try:
                return torch.device(walk(v["$device"], depth + 1))
            except (RuntimeError, TypeError) as exc:
                raise WireError(f"bad device: {exc}") from None
        if tag == "$tuple":
            items = v["$tuple"]
            if not isinstance(items, list):
                raise WireError("malformed $tuple")
            return tuple(walk(x, depth + 1) for x in items)
        if tag == "$model":
            m = v["$model"]
            if build_model is None or not isinstance(m, dict) or set(m) != {"arch", "state"} \
                    or not isinstance(m["state"], dict):
                raise WireError("a model is not accepted here" if build_model is None else "malformed $model")
            state = {str(k): take(r.get("$t") if isinstance(r, dict) else None) for k, r in m["state"].items()}
            return build_model(walk(m["arch"], depth + 1), state)
        if tag == "$dc":
            name, fields = v.get("$dc"), v.get("f")
            cls = allowed.get(name) if isinstance(name, str) else None
            if cls is None or not isinstance(fields, dict):
                raise WireError(f"type {name!r} is not accepted here")
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            if not set(fields) <= names:
                raise WireError(f"{name} has no field(s) {sorted(set(fields) - names)}")
            try:
                return cls(**{k: walk(x, depth + 1) for k, x in fields.items()})
            except TypeError as exc:
                raise WireError(f"{name}: {exc}") from None
        raise WireError(f"unknown tag {tag!r}")

    return walk(header["v"], 0)


def _tensors(specs: list[Any], data: memoryview) -> list[torch.Tensor]:
    out, at = [], 0
    for s in specs:
        if not isinstance(s, dict) or set(s) != {"dtype", "shape", "nbytes"} or s["dtype"] not in DTYPES \
                or not isinstance(s["shape"], list) or not all(type(d) is int and d >= 0 for d in s["shape"]) \
                or type(s["nbytes"]) is not int:
            raise WireError(f"bad tensor description {s!r}")
        dtype = DTYPES[s["dtype"]]
        count = 1
        for d in s["shape"]:
            count *= d
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        if nbytes != s["nbytes"] or at + nbytes > len(data):
            raise WireError(f"tensor {s['shape']} {s['dtype']} does not match its {s['nbytes']} bytes")
        raw = bytearray(data[at:at + nbytes])  # a private, writable copy: nothing aliases the frame
        t = torch.frombuffer(raw, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)
        out.append(t.view(dtype).reshape(s["shape"]) if nbytes else torch.empty(s["shape"], dtype=dtype))
        at += nbytes
    if at != len(data):
        raise WireError(f"{len(data) - at} bytes after the last tensor")
    return out
