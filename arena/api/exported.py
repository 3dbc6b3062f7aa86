"""A model handed over as a ``torch.export`` program (``.pt2``), rebuilt without running its file.

``torch.export.load`` is not safe on a file one did not write (torch 2.14, read
in its source): it unpickles weights and constants stored as pickles
(``torch.load(..., weights_only=False)``, ``pickle.loads``), falls back to an
unrestricted ``torch.load`` for the sample inputs, ``sympy.sympify``s (that is,
``eval``s) the symbolic shape expressions, ``exec``s the program's
``guards_code`` when ``ExportedProgram.module()`` builds its guard function,
resolves node targets by attribute path under ``torch``, ``math`` and
``operator`` (``torch.serialization.os.system`` is such a path), names graph
nodes after the file's strings before FX turns the graph into Python source,
and loads AOTInductor shared libraries shipped in the archive. Any of these
runs code the file chose.

So the arena never hands such a file to torch's loader. ``read_program``
reads the archive itself, with ``zipfile`` and ``json`` only:

- tensors come from the raw weight and constant records (dtype, sizes,
  strides, offset checked against the record's bytes); a record stored as a
  pickle is refused;
- the graph is rebuilt as an FX graph of the arena's own: node names are
  FX's, made from the operators' names (the file's names are only looked up,
  never written into the generated source, and keyword names must be the
  operator's own arguments), every call is an ``aten`` operator from
  ``ALLOWED_OPS`` (common, bounds-checked layers: no file I/O such as
  ``aten.from_file``, no printing, no uninitialized memory) or one of a few
  ``operator`` functions on sizes, resolved from an allowlist and checked to
  be a registered ``OpOverload``; arguments are literal numbers, strings,
  dtypes, devices and references to earlier values;
- nothing else of the file is read: metadata and stack traces, guards code,
  range constraints and their expressions, sample inputs, custom objects,
  extra files and AOTInductor binaries are ignored (a program that needs
  custom objects, or mutates its buffers, is refused).

The result computes what the program computes and runs nothing but those
operators. It takes one image batch and returns one logit tensor. A program
exported with a fixed batch size (``torch.export.export(model, (example,))``)
runs in batches of that size, padded, unless it gives the same answers on a
larger batch (checked once, when read): ``x.view(x.size(0), -1)`` bakes the
batch into the graph, ``torch.flatten(x, 1)`` does not. Export with a dynamic
batch dimension to spare the padding.

The model is ``exported_model(data, spec)``: its state dict holds the file's
bytes (``program``, uint8) beside its parameters (``net.*``), so it crosses
processes as any model does (architecture spec and state dict,
``arena.engine.wire``) and every side rebuilds it from the file's content;
programs are kept per process under their sha256. Where the graph has the
contract's cuts (``arena.api.generic``: a 4-D channel map that alone reaches
a final ``linear``), it offers ``conv_features``, ``pool_features``,
``classify``, ``head`` and ``feature_mask``, so ABS and Fine-Pruning play it;
otherwise the layer-wise agents fail with the reason. The graph was exported
in one mode: ``train()`` does not switch its batch norm or dropout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import operator
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arena.api.generic import CONTRACT, ContractError, channel_map_cut

EXPORTED = "exported"  # the ``ArchSpec.arch`` of a model rebuilt from an exported program
MAX_BYTES = 2 * 2**30  # the archive's records, uncompressed, together
MAX_JSON = 256 * 2**20  # bytes of one JSON record
MAX_NODES = 200_000

# The aten operators a classifier exported by torch.export uses (those of the arena's models and of
# torchvision's classifiers, ResNets to ViT and Swin, in torch.export's default IR) and their
# plain relatives. Kept to computations over given tensors: an operator that reads or writes files
# (from_file), prints, or hands out uninitialized memory (empty) is not here, whatever its kernels.
ALLOWED_OPS = frozenset("""
abs adaptive_avg_pool1d adaptive_avg_pool2d adaptive_max_pool1d adaptive_max_pool2d add add_ addmm alias
amax amin argmax argmin avg_pool1d avg_pool2d baddbmm batch_norm bmm cat ceil channel_shuffle chunk clamp
clamp_ clamp_max clamp_min clamp_min_ clone constant_pad_nd contiguous conv1d conv2d conv_transpose1d
conv_transpose2d copy copy_ cos cumsum detach div div_ dropout dropout_ einsum elu elu_ embedding eq erf exp
expand expand_as feature_dropout fill fill_ flatten flip floor floor_divide full full_like gather ge gelu
glu group_norm gt hardsigmoid hardsigmoid_ hardswish hardswish_ hardtanh hardtanh_ index index_select
instance_norm layer_norm le leaky_relu leaky_relu_ lift_fresh_copy linalg_vector_norm linear log log_softmax
logical_and logical_not logical_or lt masked_fill matmul max max_pool1d max_pool2d max_pool2d_with_indices
maximum mean min minimum mish mm movedim mul mul_ narrow ne neg new_ones new_zeros norm ones ones_like pad
permute pixel_shuffle pixel_unshuffle pow prelu reciprocal relu relu6 relu_ remainder repeat reshape roll
round rsqrt scalar_tensor scaled_dot_product_attention select sigmoid sigmoid_ sign silu silu_ sin slice
softmax softplus split split_with_sizes sqrt squeeze stack std sub sub_ sum swapaxes t tanh tanh_ to
transpose type_as unbind unflatten unsqueeze upsample_bilinear2d upsample_nearest2d var view view_as where
zeros zeros_like arange _native_batch_norm_legit_no_training _to_copy _assert_scalar _assert_tensor_metadata
sym_size sym_numel sym_constrain_range_for_size
""".split())

# Arithmetic on sizes, in a graph exported with a dynamic batch (``x.size(0) * 4``).
SIZE_OPS: dict[str, Callable[..., Any]] = {
    "_operator.add": operator.add, "_operator.sub": operator.sub, "_operator.mul": operator.mul,
    "_operator.floordiv": operator.floordiv, "_operator.mod": operator.mod, "_operator.neg": operator.neg,
    "_operator.truediv": operator.truediv, "_operator.eq": operator.eq, "_operator.ne": operator.ne,
    "_operator.lt": operator.lt, "_operator.le": operator.le, "_operator.gt": operator.gt,
    "_operator.ge": operator.ge, "torch.sym_max": torch.sym_max, "torch.sym_min": torch.sym_min,
    "torch.sym_float": torch.sym_float, "torch.sym_int": torch.sym_int, "torch.sym_not": torch.sym_not,
}

# torch._export.serde.schema's enums, by their member names there (stable across torch versions).
_DTYPES = {
    "BYTE": torch.uint8, "CHAR": torch.int8, "SHORT": torch.int16, "INT": torch.int32, "LONG": torch.int64,
    "HALF": torch.float16, "FLOAT": torch.float32, "DOUBLE": torch.float64, "BOOL": torch.bool,
    "BFLOAT16": torch.bfloat16,
}
_MEMORY_FORMATS = {"ContiguousFormat": torch.contiguous_format, "ChannelsLast": torch.channels_last,
                   "PreserveFormat": torch.preserve_format}
_OP = re.compile(r"torch\.ops\.aten\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_FQN = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_RECORD = re.compile(r"[A-Za-z0-9_.-]+")
SAVE_HINT = ("save it with torch.export.save(torch.export.export(model.eval(), (example,)), PATH) under torch "
             f"{torch.__version__.split('+')[0]} (the arena's), or save the state dict for the scenario's "
             "architecture instead")


class ProgramError(ValueError):
    """An exported program the arena will not run; the message says why and what to do."""


def is_exported_program(data: bytes) -> bool:
    """Whether ``data`` is a ``torch.export.save`` archive (a zip whose ``archive_format`` says pt2), as
    opposed to a ``torch.save`` file (a zip too, holding ``data.pkl``)."""
    if not data.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(n.count("/") == 1 and n.endswith("/archive_format") for n in z.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


# --- the archive ------------------------------------------------------------------------------------

class _Archive:
    """The archive's records, read by name under its one root folder."""

    def __init__(self, data: bytes) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ProgramError(f"not a readable archive ({exc}); {SAVE_HINT}") from None
        if sum(i.file_size for i in infos) > MAX_BYTES:
            raise ProgramError(f"its records unpack to more than {MAX_BYTES >> 30} GiB")
        roots = {i.filename.split("/")[0] for i in infos if i.filename.endswith("/archive_format")}
        if len(roots) != 1:
            raise ProgramError(f"not one torch.export archive (archive_format in {len(roots)} folders); {SAVE_HINT}")
        self.root = roots.pop()
        self.names = {i.filename for i in infos}
        if self.read("archive_format", 16).strip() != b"pt2":
            raise ProgramError(f"its archive_format is not pt2; {SAVE_HINT}")
        order = self.read("byteorder", 16).strip() if self.has("byteorder") else b"little"
        if order != b"little":
            raise ProgramError(f"its tensors are stored {order.decode(errors='replace')}-endian; re-save it on a "
                               "little-endian machine")

    def has(self, name: str) -> bool:
        return f"{self.root}/{name}" in self.names

    def read(self, name: str, limit: int = MAX_BYTES) -> bytes:
        full = f"{self.root}/{name}"
        if full not in self.names:
            raise ProgramError(f"the archive lacks {name}; {SAVE_HINT}")
        info = self.zip.getinfo(full)
        if info.file_size > limit:
            raise ProgramError(f"{name} is {info.file_size} bytes (limit {limit})")
        try:
            return self.zip.read(full)
        except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError) as exc:
            raise ProgramError(f"cannot read {name} ({exc})") from None

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name, MAX_JSON))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ProgramError(f"{name} is not JSON ({type(exc).__name__}: {exc})") from None


def _one(d: Any, what: str) -> tuple[str, Any]:
    """The key and value of a one-key dict (the schema's unions)."""
    if not isinstance(d, dict) or len(d) != 1:
        raise ProgramError(f"malformed {what}: {str(d)[:200]}")
    return next(iter(d.items()))


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise ProgramError(f"{what} is {str(v)[:100]}, not an integer")
    return v


def _static(sym: Any, what: str) -> int:
    """A SymInt of a tensor description that must be a plain integer."""
    kind, v = _one(sym, what)
    if kind != "as_int":
        raise ProgramError(f"{what} is symbolic; only an input's batch dimension may be")
    return _int(v, what)


def _dtype(code: Any, what: str) -> torch.dtype:
    from torch._export.serde.schema import ScalarType

    try:
        name = ScalarType(code).name
    except (ValueError, TypeError):
        name = str(code)[:50]
    if name not in _DTYPES:
        raise ProgramError(f"{what} has dtype {name}, which the arena does not read")
    return _DTYPES[name]


def _record_tensor(archive: _Archive, folder: str, fqn: str, meta: Any) -> torch.Tensor:
    """One weight or constant from its raw record: never a pickle."""
    if not isinstance(meta, dict):
        raise ProgramError(f"malformed description of {fqn}")
    if meta.get("use_pickle"):
        raise ProgramError(f"{fqn} is stored as a pickle, which could run code when loaded: refused; "
                           "export plain tensors (parameters and buffers) only")
    path, tm = meta.get("path_name"), meta.get("tensor_meta")
    if not isinstance(path, str) or not _RECORD.fullmatch(path) or not isinstance(tm, dict):
        raise ProgramError(f"malformed record of {fqn}")
    dtype = _dtype(tm.get("dtype"), fqn)
    if tm.get("layout", 7) != 7:  # schema.Layout.Strided
        raise ProgramError(f"{fqn} is not a dense (strided) tensor")
    sizes = [_static(s, f"a size of {fqn}") for s in tm.get("sizes") or []]
    strides = [_static(s, f"a stride of {fqn}") for s in tm.get("strides") or []]
    offset = _static(tm.get("storage_offset", {"as_int": 0}), f"the offset of {fqn}")
    if len(sizes) != len(strides) or min(sizes + strides + [offset], default=0) < 0:
        raise ProgramError(f"{fqn} has sizes {sizes} and strides {strides}")
    raw = archive.read(f"data/{folder}/{path}")
    item = torch.empty((), dtype=dtype).element_size()
    numel = len(raw) // item
    span = offset + sum((n - 1) * s for n, s in zip(sizes, strides)) + 1 if all(sizes) else 0
    if len(raw) % item or span > numel:
        raise ProgramError(f"{fqn}: sizes {sizes}, strides {strides} and offset {offset} do not fit its "
                           f"{len(raw)} bytes")
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return flat.as_strided(sizes, strides, offset).clone() if all(sizes) else torch.empty(sizes, dtype=dtype)


def _tensors(archive: _Archive, folder: str, config: str) -> dict[str, torch.Tensor]:
    if not archive.has(f"data/{folder}/{config}"):
        return {}
    cfg = archive.json(f"data/{folder}/{config}")
    entries = cfg.get("config") if isinstance(cfg, dict) else None
    if not isinstance(entries, dict):
        raise ProgramError(f"malformed {config}")
    return {str(fqn): _record_tensor(archive, folder, str(fqn), meta) for fqn, meta in entries.items()}


# --- the graph ----------------------------------------------------------------------------------------

def _resolve(target: Any) -> Callable[..., Any]:
    """The operator a node calls, from the allowlists only; anything else is refused by name."""
    if isinstance(target, str) and target in SIZE_OPS:
        return SIZE_OPS[target]
    m = _OP.fullmatch(target) if isinstance(target, str) else None
    if m is None:
        raise ProgramError(f"its graph calls {str(target)[:200]!r}, not an aten operator: the arena runs only "
                           "torch operators from a model file; export a model without custom Python calls")
    packet, overload = m.groups()
    if packet not in ALLOWED_OPS:
        raise ProgramError(f"its graph calls aten.{packet}, which the arena does not run from a model file "
                           "(arena.api.exported.ALLOWED_OPS lists those it does); save the state dict for an "
                           "architecture the arena builds instead")
    try:
        op = getattr(getattr(torch.ops.aten, packet), overload)
    except (AttributeError, RuntimeError):
        raise ProgramError(f"its graph calls {target}, which this torch does not have") from None
    if not isinstance(op, torch._ops.OpOverload) or op.namespace != "aten":
        raise ProgramError(f"its graph calls {target}, not an aten operator overload")
    return op


class _Builder:
    """The program's graph, rebuilt node by node into an FX graph of the arena's own (the file's names are
    only keys here: they never reach generated code)."""

    def __init__(self) -> None:
        import torch.fx as fx

        self.graph = fx.Graph()
        self.values: dict[str, Any] = {}  # the file's value names -> FX nodes

    def bind(self, name: Any, node: Any) -> None:
        if not isinstance(name, str) or name in self.values:
            raise ProgramError(f"the graph defines the value {str(name)[:100]!r} twice, or without a name")
        self.values[name] = node

    def ref(self, name: Any) -> Any:
        if not isinstance(name, str) or name not in self.values:
            raise ProgramError(f"the graph uses {str(name)[:100]!r} before defining it")
        return self.values[name]

    def argument(self, arg: Any) -> Any:
        kind, v = _one(arg, "argument")
        if kind == "as_none":
            return None
        if kind == "as_tensor":
            return self.ref(v.get("name") if isinstance(v, dict) else None)
        if kind == "as_tensors":
            return [self.argument({"as_tensor": t}) for t in _list(v)]
        if kind in ("as_optional_tensors", "as_sym_ints", "as_sym_bools", "as_sym_floats"):
            return [self.argument({kind[:-1]: t}) for t in _list(v)]
        if kind == "as_optional_tensor":
            return self.argument(v)
        if kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
            k, x = _one(v, kind)
            return self.ref(x) if k == "as_name" else self.argument({k: x})
        if kind in _LITERALS:
            return _LITERALS[kind](v)
        if kind in ("as_int_lists", "as_float_lists"):
            return [_LITERALS[kind[:-6] + "s"](x) for x in _list(v)]
        raise ProgramError(f"an argument of kind {kind} (custom objects, subgraphs, operators as values) is not "
                           "read from a model file")

    def node(self, n: Any) -> None:
        if not isinstance(n, dict):
            raise ProgramError("malformed graph node")
        fn = _resolve(n.get("target"))
        # A keyword's name is written into the generated code: only the operator's own argument names.
        names = {a.name for a in fn._schema.arguments} if isinstance(fn, torch._ops.OpOverload) else set()
        args, kwargs = [], {}
        for inp in _list(n.get("inputs")):
            if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
                raise ProgramError("malformed node input")
            value = self.argument(inp.get("arg"))
            if inp.get("kind") == 2:
                if inp["name"] not in names:
                    raise ProgramError(f"its graph passes {inp['name'][:100]!r} to {n.get('target')}, which takes "
                                       "no such argument")
                kwargs[inp["name"]] = value
            else:
                args.append(value)
        call = self.graph.call_function(fn, tuple(args), kwargs)
        outputs = _list(n.get("outputs"))
        returns = fn._schema.returns if isinstance(fn, torch._ops.OpOverload) else [None]
        if len(outputs) == 1 and len(returns) == 1:
            kind, v = _one(outputs[0], "node output")
            if kind == "as_tensors":  # an operator returning a list (split, chunk, unbind)
                for i, t in enumerate(_list(v)):
                    self.bind(t.get("name") if isinstance(t, dict) else None,
                              self.graph.call_function(operator.getitem, (call, i)))
            elif kind != "as_none":
                self.bind(_output_name(kind, v), call)
            return
        for i, out in enumerate(outputs):  # several returns (batch norm's, max_pool2d_with_indices')
            kind, v = _one(out, "node output")
            if kind != "as_none":
                self.bind(_output_name(kind, v), self.graph.call_function(operator.getitem, (call, i)))


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise ProgramError(f"malformed graph: {str(v)[:100]} is not a list")
    return v


def _output_name(kind: str, v: Any) -> Any:
    if kind == "as_tensor":
        return v.get("name") if isinstance(v, dict) else None
    if kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
        k, name = _one(v, kind)
        return name if k == "as_name" else None
    raise ProgramError(f"a node output of kind {kind} is not read from a model file")


def _float(v: Any) -> float:
    special = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}
    if isinstance(v, str) and v in special:
        return special[v]
    if type(v) not in (int, float):
        raise ProgramError(f"{str(v)[:100]} is not a number")
    return float(v)


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise ProgramError(f"{str(v)[:100]} is not a boolean")
    return v


def _string(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 1000:
        raise ProgramError(f"{str(v)[:100]} is not a short string")
    return v


def _device(v: Any) -> torch.device:
    if not isinstance(v, dict) or v.get("type") not in ("cpu", "cuda", "meta"):
        raise ProgramError(f"device {str(v)[:100]} is not read from a model file")
    index = v.get("index")
    return torch.device(v["type"], _int(index, "a device index")) if index is not None else torch.device(v["type"])


def _scalar_type(v: Any) -> torch.dtype:
    return _dtype(v, "an argument")


def _memory_format(v: Any) -> torch.memory_format:
    from torch._export.serde.schema import MemoryFormat

    try:
        return _MEMORY_FORMATS[MemoryFormat(v).name]
    except (ValueError, KeyError):
        raise ProgramError(f"memory format {str(v)[:100]} is not read from a model file") from None


def _layout(v: Any) -> torch.layout:
    if v != 7:  # schema.Layout.Strided
        raise ProgramError("only dense (strided) tensors are read from a model file")
    return torch.strided


_LITERALS: dict[str, Callable[[Any], Any]] = {
    "as_int": lambda v: _int(v, "an argument"), "as_ints": lambda v: [_int(x, "an argument") for x in _list(v)],
    "as_float": _float, "as_floats": lambda v: [_float(x) for x in _list(v)],
    "as_bool": _bool, "as_bools": lambda v: [_bool(x) for x in _list(v)],
    "as_string": _string, "as_strings": lambda v: [_string(x) for x in _list(v)],
    "as_scalar_type": _scalar_type, "as_memory_format": _memory_format, "as_layout": _layout,
    "as_device": _device,
}


# --- the program ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """A stretch of the program as a pure function: ``fn(*inputs, *tensors)``, the tensors named by
    ``fqns`` (the model's own, read when it is called, so ``.to()`` and changed weights apply)."""

    fn: nn.Module
    fqns: tuple[str, ...]


@dataclass(frozen=True)
class Contract:
    """The program's contract cuts: input -> channel map -> penultimate vector -> ``linear`` head."""

    to_map: Part
    to_vector: Part
    head_weight: str
    head_bias: str | None
    channels: int


@dataclass(frozen=True)
class Program:
    """What a file's exported program is, rebuilt: its input and output shapes, its tensors (the file's
    values; each model copies them) and its graph as functions of the arena's own."""

    sha256: str
    input_shape: tuple[int, int, int]  # channels, height, width
    num_classes: int
    batch: int | None  # the one batch size it runs (padded batches), None: any
    tensors: dict[str, tuple[torch.Tensor, bool]]  # name -> (value, is a parameter)
    full: Part
    contract: Contract | None
    why: str = ""  # why there is no contract

    def __deepcopy__(self, memo: dict[int, Any]) -> "Program":
        return self  # read-only once read: every copy of a model shares it


_PROGRAMS: OrderedDict[str, Program] = OrderedDict()  # by sha256: each process reads a file once
_KEEP = 4


def read_program(data: bytes) -> Program:
    """The program in ``data`` (a ``torch.export.save`` archive), read without running anything of it;
    kept per process under its sha256. Raises ``ProgramError`` saying why and what to do."""
    sha = hashlib.sha256(data).hexdigest()
    if sha in _PROGRAMS:
        _PROGRAMS.move_to_end(sha)
        return _PROGRAMS[sha]
    program = _read(data, sha)
    _PROGRAMS[sha] = program
    while len(_PROGRAMS) > _KEEP:
        _PROGRAMS.popitem(last=False)
    return program


def _read(data: bytes, sha: str) -> Program:
    archive = _Archive(data)
    if not archive.has("models/model.json"):
        raise ProgramError("the archive holds no exported program named 'model' (an AOTInductor package, or "
                           f"several programs?); {SAVE_HINT}")
    doc = archive.json("models/model.json")
    gm_doc = doc.get("graph_module") if isinstance(doc, dict) else None
    if not isinstance(gm_doc, dict) or not isinstance(gm_doc.get("graph"), dict) \
            or not isinstance(gm_doc.get("signature"), dict):
        raise ProgramError(f"models/model.json is not an exported program; {SAVE_HINT}")
    weights = _tensors(archive, "weights", "model_weights_config.json")
    constants = _tensors(archive, "constants", "model_constants_config.json")
    builder, fqns, params, x_name, out_name = _signature(gm_doc, weights, constants)
    graph_doc = gm_doc["graph"]
    nodes = _list(graph_doc.get("nodes"))
    if len(nodes) > MAX_NODES:
        raise ProgramError(f"its graph has {len(nodes)} nodes (limit {MAX_NODES})")
    for n in nodes:
        builder.node(n)
    builder.graph.output(builder.ref(out_name))
    tensors = {f: (weights[f] if f in weights else constants[f], f in params) for f in fqns}
    shape, batch = _input_shape(graph_doc, x_name)
    full = Part(_compile(builder.graph), tuple(fqns))
    num_classes = _check_runs(full, tensors, shape, batch)
    batch = batch if batch is None or not _any_batch(full, tensors, shape, batch) else None
    contract, why = _contract(full.fn.graph, full, tensors, shape, batch or 2)
    return Program(sha, shape, num_classes, batch, tensors, full, contract, why)


def _signature(gm_doc: dict[str, Any], weights: dict[str, torch.Tensor], constants: dict[str, torch.Tensor]
               ) -> tuple[_Builder, list[str], set[str], str, str]:
    """The graph's inputs (the image batch ``x``, then the program's own tensors ``t0``, ``t1``, ... in the
    order of their names ``fqns``), which of them are parameters, and the names of the input and output."""
    sig, graph_doc = gm_doc["signature"], gm_doc["graph"]
    specs = _list(sig.get("input_specs"))
    if len(specs) != len(_list(graph_doc.get("inputs"))):
        raise ProgramError("its signature and graph disagree on the inputs")
    table = {"parameter": ("parameter_name", weights), "buffer": ("buffer_name", weights),
             "tensor_constant": ("tensor_constant_name", constants)}
    fqns, params, user, names = [], set(), [], []
    for spec in specs:
        kind, v = _one(spec, "input spec")
        arg = v.get("arg") if isinstance(v, dict) else None
        if kind == "user_input":
            k, t = _one(arg, "user input")
            if k != "as_tensor" or not isinstance(t, dict):
                raise ProgramError(f"its forward takes a {k} input; the arena hands it one image batch")
            user.append(t.get("name"))
            continue
        if kind not in table:
            raise ProgramError(f"it takes a {kind} input (custom objects, tokens or constants) which the arena "
                               "does not read; export a model whose forward takes only the image batch")
        key, source = table[kind]
        fqn = v.get(key)
        if not isinstance(fqn, str) or not _FQN.fullmatch(fqn) or fqn not in source or fqn in fqns:
            raise ProgramError(f"its {kind} {str(fqn)[:100]!r} is missing, misnamed or repeated")
        if kind == "buffer" and v.get("persistent") is False:
            raise ProgramError(f"its buffer {fqn} is not persistent (not saved); register it persistent")
        fqns.append(fqn)
        names.append(arg.get("name") if isinstance(arg, dict) else None)
        if kind == "parameter":
            params.add(fqn)
    if len(user) != 1:
        raise ProgramError(f"its forward takes {len(user)} inputs; the arena hands it one image batch")
    builder = _Builder()
    builder.bind(user[0], builder.graph.placeholder("x"))
    for i, name in enumerate(names):
        builder.bind(name, builder.graph.placeholder(f"t{i}"))
    outs = _list(sig.get("output_specs"))
    kinds = [_one(o, "output spec")[0] for o in outs]
    if kinds != ["user_output"]:
        raise ProgramError(f"its outputs are {kinds}: export in eval mode (model.eval(): no buffer mutated) a "
                           "model that returns one logit tensor")
    out = _one(outs[0], "output spec")[1]
    k, t = _one(out.get("arg") if isinstance(out, dict) else None, "output")
    if k != "as_tensor" or not isinstance(t, dict):
        raise ProgramError("its output is not a tensor: export a model that returns one logit tensor")
    return builder, fqns, params, user[0], t.get("name")


def _input_shape(graph_doc: dict[str, Any], x_name: str) -> tuple[tuple[int, int, int], int | None]:
    meta = (graph_doc.get("tensor_values") or {}).get(x_name)
    sizes = meta.get("sizes") if isinstance(meta, dict) else None
    if not isinstance(sizes, list) or len(sizes) != 4:
        raise ProgramError("its input is not an image batch (N x C x H x W)")
    kind, b = _one(sizes[0], "the batch size")
    c, h, w = (_static(s, "the input's channels or size") for s in sizes[1:])
    return (c, h, w), (_int(b, "the batch size") if kind == "as_int" else None)


def _compile(graph: Any) -> nn.Module:
    """The graph as Python, generated by FX from the arena's own names and the allowlisted operators."""
    import torch.fx as fx

    graph.lint()
    return fx.GraphModule(nn.Module(), graph, class_name="ExportedGraph")


def _call(part: Part, values: dict[str, torch.Tensor], *inputs: torch.Tensor) -> Any:
    return part.fn(*inputs, *(values[f] for f in part.fqns))


def in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``fn`` over ``x`` in batches of exactly ``size`` (the last padded with zeros, its padding dropped):
    how a program exported for one batch size answers any. ``size`` None: ``fn(x)``."""
    if size is None or len(x) == size:
        return fn(x)
    out = []
    for start in range(0, max(len(x), 1), size):
        chunk = x[start:start + size]
        n = len(chunk)
        if n < size:
            chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
        out.append(fn(chunk)[:n])
    return torch.cat(out)


def _check_runs(full: Part, tensors: dict[str, tuple[torch.Tensor, bool]], shape: tuple[int, int, int],
                batch: int | None) -> int:
    """Run the program once on a blank batch: it must answer one logit row per input. Its class count."""
    values = {k: v for k, (v, _) in tensors.items()}
    n = batch or 2
    try:
        with torch.no_grad():
            out = _call(full, values, torch.zeros(n, *shape))
    except Exception as exc:  # noqa: BLE001 - the program's own failure, reported as the file's
        raise ProgramError(f"the program fails on a {n} x {' x '.join(map(str, shape))} batch "
                           f"({type(exc).__name__}: {str(exc)[:300]})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != n or not out.is_floating_point():
        raise ProgramError(f"the program returns {getattr(out, 'shape', type(out).__name__)} for {n} inputs, "
                           "not one row of logits per input")
    return int(out.shape[1])


def _any_batch(full: Part, tensors: dict[str, tuple[torch.Tensor, bool]], shape: tuple[int, int, int],
               batch: int) -> bool:
    """Does a program exported for ``batch`` inputs answer a larger batch as it answers each of its
    chunks? Then it runs whole batches (no padding)."""
    values = {k: v for k, (v, _) in tensors.items()}
    x = torch.rand(2 * batch + 1, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            whole = _call(full, values, x)
            chunked = in_batches(lambda c: _call(full, values, c), x, batch)
    except Exception:  # noqa: BLE001 - the batch is baked into the graph (a view to [batch, -1])
        return False
    return isinstance(whole, torch.Tensor) and whole.shape == chunked.shape and \
        torch.allclose(whole, chunked, rtol=1e-4, atol=1e-5)


def _contract(graph: Any, full: Part, tensors: dict[str, tuple[torch.Tensor, bool]],
              shape: tuple[int, int, int], batch: int) -> tuple[Contract | None, str]:
    """The contract's cuts of the graph (``arena.api.generic.channel_map_cut``), or why there are none."""
    from torch.fx.passes.shape_prop import ShapeProp

    hint = ("export a network whose forward ends in a linear head after its last channel map, or save the "
            "state dict of an arena.api.ArenaModel")
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    own = dict(zip(placeholders[1:], full.fqns))  # placeholder -> the program's tensor it stands for
    head = next(n for n in graph.nodes if n.op == "output").args[0]
    weight = head.args[1] if getattr(head, "target", None) is torch.ops.aten.linear.default else None
    bias = head.args[2] if weight is not None and len(head.args) > 2 else None
    if weight not in own or (bias is not None and bias not in own) or tensors[own[weight]][0].dim() != 2:
        return None, f"the exported program's output is not that of a linear layer over its own weights; {hint}"
    values = {k: v for k, (v, _) in tensors.items()}
    try:
        ShapeProp(full.fn).propagate(torch.zeros(batch, *shape), *(values[f] for f in full.fqns))
        cut, channels = channel_map_cut(graph, head, "the exported program", hint)
        to_map = _part(graph, [placeholders[0]], cut, own)
        to_vector = _part(graph, [cut], head.args[0], own)
    except ContractError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - shape propagation of an odd graph
        return None, f"the exported program's shapes cannot be followed ({type(exc).__name__}: {exc}); {hint}"
    return Contract(to_map, to_vector, own[weight], own[bias] if bias is not None else None, channels), ""


def _part(graph: Any, inputs: list[Any], output: Any, tensors: dict[Any, str]) -> Part:
    """The nodes of ``graph`` that compute ``output`` from ``inputs`` (and the program's tensors), as a
    function of its own."""
    import torch.fx as fx

    needed, stack = set(), [output]
    while stack:
        n = stack.pop()
        if n in needed or n in inputs:
            continue
        needed.add(n)
        stack.extend(n.all_input_nodes)
    if any(n.op == "placeholder" and n not in tensors for n in needed):
        raise ContractError("the exported program's input reaches past its channel map")
    new, env = fx.Graph(), {}
    for i, n in enumerate(inputs):
        env[n] = new.placeholder(f"x{i}")
    used = [n for n in graph.nodes if n in needed and n.op == "placeholder"]
    for n in used:
        env[n] = new.placeholder(f"t{len(env)}")
    for n in graph.nodes:
        if n in needed and n.op == "call_function":
            env[n] = new.node_copy(n, lambda a: env[a])
    new.output(env[output])
    return Part(_compile(new), tuple(tensors[n] for n in used))


# --- the model ----------------------------------------------------------------------------------------

class ExportedNet(nn.Module):
    """An exported program as a module: the program's tensors under ``net`` (their names in the file), the
    file's bytes as the ``program`` buffer (so the model is rebuilt from its state dict anywhere), and
    ``forward`` running the graph over this module's tensors."""

    def __init__(self, data: torch.Tensor, program: Program, spec: Any) -> None:
        super().__init__()
        self.net = nn.Module()
        for fqn, (value, is_param) in program.tensors.items():
            _place(self.net, fqn, value.clone(), is_param)
        self.register_buffer("program", data)
        self.spec = spec
        self.__dict__["_program"] = program  # no tensors of its own: shared by every copy

    def _values(self) -> dict[str, torch.Tensor]:
        return {**dict(self.net.named_parameters()), **dict(self.net.named_buffers())}

    def _run(self, part: Part, x: torch.Tensor) -> torch.Tensor:
        values = self._values()
        return in_batches(lambda c: _call(part, values, c), x, self.__dict__["_program"].batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.__dict__["_program"].full, x)


class ExportedModel(ExportedNet):
    """An exported program with the contract's cuts: the layer-wise agents' interface over the graph."""

    def __init__(self, data: torch.Tensor, program: Program, spec: Any) -> None:
        super().__init__(data, program, spec)
        self.register_buffer("feature_mask", torch.ones(program.contract.channels))

    @property
    def head(self) -> nn.Linear:
        """The final linear layer over the program's own weight and bias (the same tensors)."""
        c = self.__dict__["_program"].contract
        weight = self.net.get_parameter(c.head_weight)
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=c.head_bias is not None,
                         device="meta", dtype=weight.dtype)
        head.weight = weight
        if c.head_bias is not None:
            head.bias = self.net.get_parameter(c.head_bias)
        return head

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self._run(self.__dict__["_program"].contract.to_map, x)
        return fmap * self.feature_mask.view(1, -1, 1, 1)

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        return self._run(self.__dict__["_program"].contract.to_vector, fmap)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(self.conv_features(x))

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        c = self.__dict__["_program"].contract
        bias = self.net.get_parameter(c.head_bias) if c.head_bias is not None else None
        return torch.nn.functional.linear(feats, self.net.get_parameter(c.head_weight), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class OpaqueExportedModel(ExportedNet):
    """An exported program without the contract's cuts: its outputs work, its layers raise why."""

    def __getattr__(self, name: str) -> Any:
        if name in (*CONTRACT, "head"):
            raise ContractError(f"this agent needs the model's layers ({name}), and "
                                f"{self.__dict__['_program'].why}")
        return super().__getattr__(name)


def _place(root: nn.Module, fqn: str, value: torch.Tensor, is_param: bool) -> None:
    """Register ``value`` at the dotted path ``fqn`` under ``root``, making the modules on the way."""
    *path, leaf = fqn.split(".")
    m = root
    try:
        for part in path:
            if part not in m._modules:
                m.add_module(part, nn.Module())
            m = m._modules[part]
        if is_param:
            m.register_parameter(leaf, nn.Parameter(value, requires_grad=value.is_floating_point()))
        else:
            m.register_buffer(leaf, value)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProgramError(f"its tensor name {fqn!r} cannot be a module attribute ({exc})") from None


def exported_spec(program: Program, like: Any) -> Any:
    """The ``ArchSpec`` of a model of ``program`` in a scenario whose models are ``like`` (the benign
    model's spec: its inputs, classes and normalization), under the architecture name ``exported`` and
    naming the program by its sha256. ``exported_model`` checks that the program fits it."""
    return dataclasses.replace(like, arch=EXPORTED, options={"sha256": program.sha256})


def exported_model(data: torch.Tensor | bytes, spec: Any) -> nn.Module:
    """A model running the program in ``data`` (a ``torch.export.save`` archive's bytes, or a uint8 tensor
    of them), with the parameters it was saved with; ``spec`` (``arch`` ``exported``) must name it by its
    sha256 and describe its inputs and classes. Raises ``ProgramError``."""
    if isinstance(data, torch.Tensor) and data.dtype == torch.uint8 and data.dim() == 1:
        raw = data.detach().cpu().contiguous().numpy().tobytes()
    elif isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
    else:
        raise ProgramError("the program buffer is not bytes (a 1-D uint8 tensor)")
    program = read_program(raw)
    want = (spec.options or {}).get("sha256")
    if want is not None and want != program.sha256:
        raise ProgramError(f"the program's bytes (sha256 {program.sha256[:16]}) are not those its "
                           f"architecture names ({str(want)[:16]})")
    c, h, w = program.input_shape
    if (c, h, w) != (spec.in_channels, spec.image_size, spec.image_size) or program.num_classes != spec.num_classes:
        raise ProgramError(f"the program takes {c} x {h} x {w} images and answers {program.num_classes} classes; "
                           f"the scenario's models take {spec.in_channels} x {spec.image_size} x "
                           f"{spec.image_size} and answer {spec.num_classes}: scan it under a scenario of "
                           "the data it was trained on")
    buffer = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    cls = ExportedModel if program.contract is not None else OpaqueExportedModel
    return cls(buffer, program, spec)
