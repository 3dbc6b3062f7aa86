"""Any classifier in the arena's model contract, by splitting its graph.

Several agents read a model's inside: Fine-Pruning and ABS the last
convolutional channel map (``conv_features``, under ``feature_mask``), the
latent and ABE attacks, activation clustering, spectral signatures and NSR
the penultimate vector (``features``), ABS the map-to-logits path
(``classify``). The arena's own models and the torchvision ones
(``arena.api.tv_models``) are written that way. An architecture of your own
(the ``arena.architectures`` entry points) need not be: ``with_contract``
traces it with ``torch.fx`` and splits the graph in three where

1. the last 4-D value with a spatial extent (the channel map), and
2. the input of the last ``nn.Linear`` (the head, whose output must be the
   model's output)

are each the only value crossing the cut, which holds for the plain CNNs,
ResNets and the like. A network FX cannot trace (data-dependent control
flow), or without such cuts, still trains, attacks and is defended by every
agent that needs only its outputs; an agent that needs its layers fails with
the reason and the fix (subclass ``arena.api.ArenaModel``) instead of an
attribute error deep in its code.

The wrapped model keeps the network's own parameter names (its children are
registered on the wrapper), so a state dict saved from the bare network loads
into it (plus ``feature_mask``, all ones). It takes inputs as the network does:
no normalization is added. Parameters and buffers the network reads by
attribute (``self.mean`` in its ``forward``, not through a child's call) are
handed to the split parts at each call from the wrapper, so ``.to()``,
``deepcopy`` and ``load_state_dict`` reach them as they reach the children.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


# What the layer-wise agents call; ``head`` (the last linear layer) is offered too where there is one.
CONTRACT = ("conv_features", "features", "pool_features", "classify", "feature_mask")


class ContractError(AttributeError):
    """An architecture that cannot be put in the arena's model contract; the message says why. An
    ``AttributeError``, so ``hasattr(model, "conv_features")`` checks in agents read it as absent."""


def has_contract(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in CONTRACT)


HINT = ("subclass arena.api.ArenaModel (conv_features, pool_features, classify, feature_mask, head) "
        "for this architecture")


class _Part(nn.Module):
    """One piece of a split network, taking its one input; the attributes FX passes it as extra
    arguments (what the network reads by ``get_attr``) are looked up on ``owner`` at each call."""

    def __init__(self, piece: nn.Module, reads: tuple[str | None, ...]) -> None:
        super().__init__()
        self.piece = piece
        self.reads = reads  # per argument: an attribute path, or None for the input

    def forward(self, owner: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.piece(*[x if r is None else _attr(owner, r) for r in self.reads])


def _attr(owner: nn.Module, path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(owner.get_submodule(module) if module else owner, name)


def _split(net: nn.Module, example: torch.Tensor, where: str) -> tuple[_Part, _Part, nn.Linear, int]:
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp
    from torch.fx.passes.split_module import split_module

    try:
        gm = fx.symbolic_trace(net)
        was = net.training
        net.eval()
        ShapeProp(gm).propagate(example)
        net.train(was)
    except Exception as exc:  # FX cannot trace data-dependent control flow, among others
        raise ContractError(f"{where}: torch.fx cannot trace it ({type(exc).__name__}: {exc}); {HINT}") from None
    output = next(n for n in gm.graph.nodes if n.op == "output")
    head_node = output.args[0]
    head = gm.get_submodule(head_node.target) if getattr(head_node, "op", "") == "call_module" else None
    if not isinstance(head, nn.Linear):
        raise ContractError(f"{where}: its output is not that of an nn.Linear head; {HINT}")
    cut, channels = channel_map_cut(gm.graph, head_node, where, HINT)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    part = {n: 0 if order[n] <= order[cut] else 1 if order[n] < order[head_node] else 2
            for n in gm.graph.nodes if n.op not in ("placeholder", "output")}
    split = split_module(gm, net, lambda n: part[n])
    # split_module keeps get_attr nodes in the outer graph and passes their values to the pieces as
    # arguments: each piece is called with the same arguments, read from the wrapper at call time.
    calls = {n.target: n for n in split.graph.nodes if n.op == "call_module"}
    parts = []
    for name in ("submod_0", "submod_1"):
        reads = tuple(a.target if getattr(a, "op", "") == "get_attr" else None for a in calls[name].args)
        if reads.count(None) != 1 or calls[name].kwargs:
            raise ContractError(f"{where}: a part before its head takes more than the one input; {HINT}")
        parts.append(_Part(getattr(split, name), reads))
    return parts[0], parts[1], head, channels


def channel_map_cut(graph: Any, head_node: Any, where: str, hint: str) -> tuple[Any, int]:
    """Where a shape-propagated FX ``graph`` splits into the contract: the last 4-D value with a spatial
    extent that is the only value crossing on to ``head_node`` (the final linear layer), and its number
    of channels. The head's input must be the only value reaching the head. Placeholders (the input,
    and the parameters of a lifted graph) are free to be read anywhere, so they do not count as crossing.
    Raises ``ContractError`` (with ``hint``, what to do) where there is no such cut."""
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    order = {n: i for i, n in enumerate(nodes)}

    def crossing(cut: int) -> set:
        """Values made at or before position ``cut`` and used after it."""
        return {n for n in nodes[: cut + 1] for user in n.users if user.op == "output" or order.get(user, -1) > cut}

    def shape(n: Any) -> tuple[int, ...]:
        tm = n.meta.get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else ()

    cut2 = order[head_node] - 1
    if cut2 < 0 or crossing(cut2) != {head_node.args[0]}:
        raise ContractError(f"{where}: its head's input is not the only value reaching the head; {hint}")
    maps = [i for i, n in enumerate(nodes[: cut2 + 1]) if len(shape(n)) == 4 and crossing(i) == {n}]
    spatial = [i for i in maps if shape(nodes[i])[2] * shape(nodes[i])[3] > 1]
    if not maps:
        raise ContractError(f"{where}: no channel map (a 4-D value) is the only value crossing to the head; {hint}")
    cut1 = (spatial or maps)[-1]
    return nodes[cut1], shape(nodes[cut1])[1]


def _adopt(wrapper: nn.Module, net: nn.Module) -> None:
    """Register ``net``'s children, parameters and buffers on ``wrapper`` under their own names, so a
    state dict saved from the bare network loads into the wrapper."""
    for name, child in net.named_children():
        wrapper.add_module(name, child)
    for name, p in net.named_parameters(recurse=False):
        wrapper.register_parameter(name, p)
    for name, b in net.named_buffers(recurse=False):
        wrapper.register_buffer(name, b, persistent=name not in net._non_persistent_buffers_set)


class OpaqueModel(nn.Module):
    """A classifier that could not be split: its outputs work, its layers raise the reason."""

    def __init__(self, net: nn.Module, spec: Any, why: str) -> None:
        super().__init__()
        _adopt(self, net)
        self.__dict__["_net"] = net
        self.__dict__["_why"] = why
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_net"](x)

    def _apply(self, fn: Any, recurse: bool = True) -> "OpaqueModel":
        # .to() replaces the wrapper's top-level buffers (and, under torch's overwrite option, its
        # parameters) with new tensors; the network keeps computing with its own entries, so point
        # them at the wrapper's. Children are shared and converted once.
        super()._apply(fn, recurse)
        net = self.__dict__["_net"]
        for table in ("_buffers", "_parameters"):
            mine, theirs = getattr(self, table), getattr(net, table)
            for name in theirs:
                if name in mine:
                    theirs[name] = mine[name]
        return self

    def __getattr__(self, name: str) -> Any:
        if name in (*CONTRACT, "head"):
            raise ContractError(f"this agent needs the model's layers ({name}), and {self.__dict__['_why']}")
        return super().__getattr__(name)


class GenericModel(nn.Module):
    """A traced classifier split into the arena's contract (module docstring)."""

    def __init__(self, net: nn.Module, spec: Any) -> None:
        super().__init__()
        example = torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)
        to_map, to_vector, head, channels = _split(net, example, f"architecture '{spec.arch}'")
        _adopt(self, net)
        # The parts share the children's modules; kept out of the module tree so that parameters are
        # neither registered twice nor renamed (deepcopy and .to() still reach them through the children).
        self.__dict__["_parts"] = (to_map, to_vector)
        self.__dict__["_head"] = head
        self.spec = spec
        self.register_buffer("feature_mask", torch.ones(channels))

    @property
    def head(self) -> nn.Linear:
        return self.__dict__["_head"]

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_parts"][0](self, x) * self.feature_mask.view(1, -1, 1, 1)

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_parts"][1](self, fmap)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_features(self.conv_features(x))

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def with_contract(model: nn.Module, spec: Any) -> nn.Module:
    """``model`` itself when it has the arena's contract, else ``GenericModel(model, spec)``, else (it
    cannot be split) an ``OpaqueModel`` whose layers raise why."""
    if has_contract(model):
        return model
    try:
        return GenericModel(model, spec)
    except ContractError as exc:
        return OpaqueModel(model, spec, str(exc))
