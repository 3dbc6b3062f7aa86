"""The CPU max pool is torch's max pool bit for bit: values, gradients (ties included) and trained bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import arena.api.models as models
from arena.api.models import ArchSpec, build_model
from arena.api.pooling import max_pool2

SPEC = ArchSpec("small-cnn", 1, 28, 10, (0.3,), (0.35,))


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (2, 5, 7, 9), (3, 16, 28, 28), (1, 2, 2, 2), (2, 3, 3, 3)])
def test_values_and_gradients_are_torchs_with_ties_odd_sizes_and_nans(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    x[:, :, : shape[2] // 2] = 0.25  # a constant band: four-way ties in every window there
    x[0, 0, -2:, :2] = torch.tensor([[1.0, 1.0], [0.5, 1.0]])  # a three-way tie at a window's maximum
    x[-1, -1, 0, 0] = float("nan")
    mine, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = max_pool2(mine), F.max_pool2d(theirs, 2)
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    assert a.is_contiguous() and a.shape == b.shape
    up = torch.randn(b.shape, generator=g)
    a.backward(up)
    b.backward(up)
    assert torch.equal(mine.grad, theirs.grad)
    with torch.no_grad():  # the inference path
        assert torch.equal(max_pool2(x).nan_to_num(), F.max_pool2d(x, 2).nan_to_num())


def _train(pool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "max_pool2", pool)
        for _ in range(5):
            x = torch.rand(64, 1, 28, 28, generator=g)
            x[:, :, :6] = 0.0  # a blank border, as Fashion-MNIST's: ties in the pooled maps
            loss = F.cross_entropy(model(x), torch.randint(0, 10, (64,), generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.state_dict()


def test_training_gives_the_bytes_torchs_pool_gives():
    fast, plain = _train(max_pool2), _train(lambda x: F.max_pool2d(x, 2))
    assert all(torch.equal(fast[k], plain[k]) for k in plain)


def test_traces_and_channels_last_inputs_get_torchs_operator():
    graph = torch.fx.symbolic_trace(build_model(SPEC)).graph
    assert any(n.target is F.max_pool2d for n in graph.nodes)
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert max_pool2(x).is_contiguous(memory_format=torch.channels_last)  # left as torch leaves it


def test_inspectors_search_a_channels_last_copy_and_fall_back_on_an_uncopyable_model():
    """ModelInspector.deploy hands ``inspect`` a channels-last copy on the CPU (faster; the same function up to
    the convolutions' summation order) and leaves the caller's model alone; a model that cannot be copied is
    searched as it is."""
    import threading

    from arena.api.defenses import inference_copy

    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    x = torch.rand(8, 1, 28, 28)
    fast = inference_copy(model, torch.device("cpu"))
    assert fast is not model and fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.conv1.weight.is_contiguous()  # the caller's model keeps its layout
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    model.lock = threading.Lock()  # deepcopy refuses a lock
    assert inference_copy(model, torch.device("cpu")) is model
    assert inference_copy(model, torch.device("meta")) is model  # off the CPU: the model itself
