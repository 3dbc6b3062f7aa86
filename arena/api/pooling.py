"""``F.max_pool2d(x, 2)`` on the CPU, bit for bit, about twice as fast on N x C x H x W tensors.

On the CPU, torch's max pool over a contiguous (NCHW) tensor is the slowest
kernel of the arena's small CNN: in profiles of Neural Cleanse's and
DeepInspect's reverse-engineering and of training on fmnist-cnn it took about
a third of the time, more than the convolutions' forward pass. The same
operator on a channels-last copy of the tensor is several times faster, and
the copies cost less than they save (docs/measurements.md). So ``max_pool2``
pools a channels-last copy and hands back an NCHW result:

- values: the same maximum, whatever the layout;
- gradients: the channels-last kernel returns the index of each window's
  maximum (a position in the H x W plane, the same in either layout; among
  ties, the first in row-major order, as the NCHW kernel picks it), and the
  backward pass is torch's own NCHW max-pool backward with those indices.

So nothing changes bit for bit (no trained byte, no score):
``tests/test_pooling.py`` checks values and gradients against torch's operator
with ties and odd sizes, and that a short training gives the same weights.
The whole model in channels-last is faster still, but its convolutions sum in
another order and change the low bits. ``arena.api.training.fit`` trains that
way on every device (model and batches channels-last), so its pools get
channels-last maps and torch's operator; model inspectors, which read a
model without training it, search a channels-last copy
(``arena.api.defenses.ModelInspector.deploy``). The copy here serves the
NCHW maps of a model used in its NCHW layout outside ``fit``.

A tensor that is already channels-last (the inference copies of
``arena.api.training.predict_proba``), a GPU tensor, and every trace
(``torch.export``, FX, TorchScript, ``torch.compile``) get torch's operator
itself, so exported graphs stay plain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_CL = torch.channels_last
_K, _S, _P, _D = [2, 2], [2, 2], [0, 0], [1, 1]


class _ChannelsLastMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=_CL), _K, _S, _P, _D, False)
        ctx.save_for_backward(x, idx.contiguous())
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, _K, _S, _P, _D, False, idx)


def _tracing(x: torch.Tensor) -> bool:
    return (isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``: kernel 2, stride 2, an odd last row or column dropped."""
    if (_tracing(x) or x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous()
            or x.is_contiguous(memory_format=_CL)):  # NCHW only: CL is torch's fast case (C = 1 is both)
        return F.max_pool2d(x, 2)
    if x.requires_grad and torch.is_grad_enabled():
        return _ChannelsLastMaxPool.apply(x)
    return F.max_pool2d(x.contiguous(memory_format=_CL), 2).contiguous()
