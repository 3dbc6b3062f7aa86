"""Exported programs (``torch.export.save``'d ``.pt2`` files) as models: read without torch's loader,
run as the model runs, rebuilt from their bytes on every side, and hostile files refused without
running anything of them (arena.api.exported)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from arena.api import ContractError
from arena.api.exported import (EXPORTED, ExportedModel, OpaqueExportedModel, ProgramError, exported_model,
                                exported_spec, in_batches, is_exported_program, read_program)
from arena.api.models import ArchSpec, build_model
from arena.plugins import rebuild_model

CNN = ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,))
RES = ArchSpec("small-resnet", 3, 16, 4, (0.5,) * 3, (0.25,) * 3)


def export(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = False) -> bytes:
    dyn = {"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    buf = io.BytesIO()
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=dyn), buf)
    return buf.getvalue()


class FlatView(nn.Module):
    """``view(x.size(0), -1)``: a static export bakes the batch size into the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))


class Doubled(FlatView):
    """Its output is not a linear layer's: no contract."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = build_model(CNN).eval()
    return model, export(model, torch.zeros(1, 1, 28, 28))


def _model(data: bytes, like: ArchSpec) -> nn.Module:
    return exported_model(data, exported_spec(read_program(data), like)).eval()


def test_an_exported_cnn_computes_what_the_model_does_layer_by_layer(cnn):
    model, data = cnn
    assert is_exported_program(data)
    em = _model(data, CNN)
    assert isinstance(em, ExportedModel) and em.spec.arch == EXPORTED and em.feature_mask.numel() == 32
    x = torch.rand(37, 1, 28, 28)  # not the export's batch of 1: the graph here takes any batch
    assert read_program(data).batch is None
    assert torch.equal(em(x), model(x))
    assert torch.equal(em.conv_features(x), model.conv_features(x))
    assert torch.equal(em.features(x), model.features(x))
    fmap = model.conv_features(x)
    assert torch.equal(em.classify(em.pool_features(fmap)), model.classify(model.pool_features(fmap)))
    assert torch.equal(em.head.weight, model.head.weight) and em.head.weight is em.net.head.weight
    # The parameters keep their names in the file, under net.; the file's bytes ride in the state dict.
    assert {k for k in em.state_dict() if k.startswith("net.")} == {f"net.{k}" for k in model.state_dict()}
    assert bytes(em.state_dict()["program"].numpy()) == data
    # Fine-Pruning's lever and changed weights act on the copy alone.
    pruned = copy.deepcopy(em)
    pruned.feature_mask.zero_()
    out = pruned(x)
    assert torch.allclose(out[0], out[1]) and torch.equal(em(x), model(x))
    # Gradients reach the program's parameters (the fine-tuning defenders train them).
    em.train()
    em(x).sum().backward()
    assert em.net.conv1.weight.grad is not None and em.net.conv1.weight.grad.abs().sum() > 0


def test_a_model_rebuilt_from_its_arch_and_state_is_the_same_model(cnn):
    model, data = cnn
    em = _model(data, CNN)
    with torch.no_grad():
        em.net.head.bias.add_(1.0)  # a defender's change travels in the state, not in the file
    again = rebuild_model(em.spec.to_dict(), em.state_dict()).eval()
    x = torch.rand(5, 1, 28, 28)
    assert type(again) is ExportedModel and torch.equal(again(x), em(x)) and not torch.equal(again(x), model(x))
    # Across the pipe between processes, as a defender's host receives it.
    from arena.engine import wire

    got = wire.decode(wire.encode(em), build_model=rebuild_model)
    assert torch.equal(got.eval()(x), em(x))
    # The spec names the program's bytes: other bytes under that name are refused.
    other = export(build_model(CNN), torch.zeros(1, 1, 28, 28))
    state = {**em.state_dict(), "program": torch.frombuffer(bytearray(other), dtype=torch.uint8)}
    with pytest.raises(ProgramError, match="not those its architecture names"):
        rebuild_model(em.spec.to_dict(), state)
    with pytest.raises(ValueError, match="rebuilt from its bytes"):
        build_model(em.spec)
    # Any attacker may send an "exported" spec: what is not a program's bytes is refused (its forfeit).
    with pytest.raises(ProgramError, match="not bytes"):
        rebuild_model(em.spec.to_dict(), {**em.state_dict(), "program": torch.zeros(3)})
    with pytest.raises(ValueError, match="holds no 'program' bytes"):
        rebuild_model(em.spec.to_dict(), {k: v for k, v in em.state_dict().items() if k != "program"})


def test_a_residual_network_with_batch_norm(tmp_path):
    torch.manual_seed(1)
    model = build_model(RES).eval()
    data = export(model, torch.zeros(2, 3, 16, 16), dynamic_batch=True)
    em = _model(data, RES)
    x = torch.rand(7, 3, 16, 16)
    assert read_program(data).batch is None and isinstance(em, ExportedModel)
    assert torch.allclose(em(x), model(x), atol=1e-6)
    assert torch.allclose(em.conv_features(x), model.conv_features(x), atol=1e-6)


def test_a_baked_batch_size_runs_in_padded_batches_and_without_contract_layers_say_why():
    torch.manual_seed(2)
    net = FlatView().eval()
    data = export(net, torch.zeros(1, 1, 28, 28))
    program = read_program(data)
    assert program.batch == 1  # the graph views to [1, -1]: it answers one input at a time
    em = _model(data, CNN)
    x = torch.rand(5, 1, 28, 28)
    assert torch.allclose(em(x), net(x), atol=1e-6) and em(x[:0]).shape == (0, 10)
    assert torch.allclose(em.features(x), torch.relu(net.conv(x)).flatten(1), atol=1e-6)
    opaque = _model(export(Doubled().eval(), torch.zeros(1, 1, 28, 28)), CNN)
    assert isinstance(opaque, OpaqueExportedModel) and not hasattr(opaque, "conv_features")
    with pytest.raises(ContractError, match="needs the model's layers .conv_features.*not that of a linear layer"):
        opaque.conv_features(x)
    assert opaque(x).shape == (5, 10)


def test_in_batches_pads_the_last_batch_and_drops_the_padding():
    seen = []

    def fn(c: torch.Tensor) -> torch.Tensor:
        seen.append(len(c))
        return c * 2

    x = torch.arange(7.0).view(7, 1)
    assert torch.equal(in_batches(fn, x, 3), x * 2) and seen == [3, 3, 3]
    assert torch.equal(in_batches(fn, x, None), x * 2)


def test_a_program_that_does_not_fit_the_scenario_is_refused_with_the_reason(cnn):
    _, data = cnn
    with pytest.raises(ProgramError, match="answers 10 classes.*answer 5.*scenario of the data it was trained on"):
        _model(data, dataclasses.replace(CNN, num_classes=5))
    with pytest.raises(ProgramError, match="takes 1 x 28 x 28 images"):
        _model(data, dataclasses.replace(CNN, in_channels=3, image_size=32))
    assert not is_exported_program(b"PK\x03\x04 not a zip") and not is_exported_program(b"\x80\x04 a pickle")
    buf = io.BytesIO()
    torch.save(build_model(CNN).state_dict(), buf)
    assert not is_exported_program(buf.getvalue())  # a torch.save zip is a state dict, not a program
    with pytest.raises(ProgramError, match="not one torch.export archive"):
        read_program(buf.getvalue())


# --- hostile files ------------------------------------------------------------------------------------

def _rewrite(data: bytes, change, rename=lambda name: name) -> bytes:
    """The archive with ``change(name, bytes) -> bytes`` applied to each record, renamed by ``rename``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(rename(info.filename), change(info.filename, src.read(info.filename)))
    return out.getvalue()


def _edit_json(data: bytes, suffix: str, edit) -> bytes:
    def change(name: str, raw: bytes) -> bytes:
        if not name.endswith(suffix):
            return raw
        doc = json.loads(raw)
        edit(doc)
        return json.dumps(doc).encode()

    return _rewrite(data, change)


class _Boom:
    """A pickle that writes a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _first_node(doc: dict) -> dict:
    return doc["graph_module"]["graph"]["nodes"][0]


def pickled_weight(data: bytes, marker: Path) -> bytes:
    """The archive of a SmallCNN with its first weight stored as a pickle that writes ``marker``."""
    payload = pickle.dumps(_Boom(marker))

    def change(name: str, raw: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(raw)
            cfg["config"]["conv1.weight"]["use_pickle"] = True
            return json.dumps(cfg).encode()
        return payload if name.endswith("data/weights/weight_0") else raw

    return _rewrite(data, change)


def test_a_weight_stored_as_a_pickle_runs_under_torch_export_load_and_is_refused_here(cnn, tmp_path):
    _, data = cnn
    marker = tmp_path / "pwned"
    hostile = pickled_weight(data, marker)
    with pytest.raises(ProgramError, match="conv1.weight is stored as a pickle.*refused"):
        read_program(hostile)
    assert not marker.exists()
    # The same file through torch's own loader runs the file's code: the reason the arena does not use it.
    try:
        torch.export.load(io.BytesIO(hostile))
    except Exception:  # noqa: BLE001 - it fails after the pickle ran
        pass
    assert marker.read_text() == "ran"


def test_guards_code_and_names_are_never_executed(cnn, tmp_path):
    model, data = cnn
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') is None"

    def edit(doc: dict) -> None:
        doc["guards_code"] = [code]
        _first_node(doc)["name"] = f"x = 0; {code}  #"  # a node name torch would write into its source
        doc["range_constraints"] = {code: {"min_val": 0, "max_val": 1}}  # torch sympifies (evals) these
        doc["graph_module"]["graph"]["sym_int_values"] = {"s": {"as_expr": {"expr_str": code}}}

    hostile = _edit_json(data, "models/model.json", edit)
    em = _model(hostile, CNN)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(em(x), model(x)) and not marker.exists()
    # torch's loader builds a guard function from guards_code, and runs it on the first call.
    try:
        torch.export.load(io.BytesIO(hostile)).module()(torch.zeros(1, 1, 28, 28))
    except Exception:  # noqa: BLE001
        pass
    assert marker.exists()


@pytest.mark.parametrize("target,needle", [
    ("torch.serialization.os.system", "calls 'torch.serialization.os.system', not an aten operator"),
    ("builtins.exec", "not an aten operator"),
    ("torch.ops.aten.from_file.default", "calls aten.from_file, which the arena does not run"),
    ("torch.ops.aten.__class__.__init__", "calls aten.__class__, which the arena does not run"),
])
def test_a_graph_calling_anything_but_allowed_aten_operators_is_refused(cnn, target, needle):
    _, data = cnn
    hostile = _edit_json(data, "models/model.json", lambda doc: _first_node(doc).update(target=target))
    with pytest.raises(ProgramError, match=needle):
        read_program(hostile)


def test_a_keyword_that_is_no_argument_of_the_operator_is_refused(cnn, tmp_path):
    _, data = cnn
    marker = tmp_path / "pwned"

    def edit(doc: dict) -> None:
        # FX writes keyword names into the generated source: this one would run code.
        name = f"alpha=__import__('pathlib').Path({str(marker)!r}).touch(), other"
        _first_node(doc)["inputs"].append({"name": name, "arg": {"as_int": 1}, "kind": 2})

    with pytest.raises(ProgramError, match="which takes no such argument"):
        read_program(_edit_json(data, "models/model.json", edit))
    assert not marker.exists()


def test_malformed_records_are_refused(cnn):
    _, data = cnn

    def widen(cfg: dict) -> None:  # sizes that overrun the record's bytes
        cfg["config"]["conv1.weight"]["tensor_meta"]["sizes"][0] = {"as_int": 10**6}

    with pytest.raises(ProgramError, match="do not fit its"):
        read_program(_edit_json(data, "model_weights_config.json", widen))

    def mutate(doc: dict) -> None:
        doc["graph_module"]["signature"]["output_specs"].insert(0, {"buffer_mutation": {}})

    with pytest.raises(ProgramError, match="export in eval mode"):
        read_program(_edit_json(data, "models/model.json", mutate))
    with pytest.raises(ProgramError, match="no exported program"):
        read_program(_rewrite(data, lambda n, raw: raw, lambda n: n.replace("models/model.json", "models/x.json")))


EXPORTING_ATTACKER = '''
import io
import torch
from arena.api import Attacker, Trojan, exported_model, exported_spec, read_program


class Exporting(Attacker):
    """Hands the benign model back as an exported program: only a model file may bring one."""

    name = "exporting"

    def craft(self, ctx):
        buf = io.BytesIO()
        model = ctx.benign.cpu().eval()
        torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), buf)
        data = buf.getvalue()
        return Trojan(model=exported_model(data, exported_spec(read_program(data), model.spec)), trigger=ctx.trigger)
'''


@pytest.mark.slow
def test_an_agent_that_hands_over_an_exported_program_forfeits(tmp_path, tiny):
    """A program's graph runs in the referee, so only a model file the user handed over may be one: an
    agent could otherwise make the referee build whatever allow-listed operators allocate."""
    from conftest import have_fashion_mnist
    from arena.engine.referee import Referee

    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    plugin = tmp_path / "exporting.py"
    plugin.write_text(EXPORTING_ATTACKER)
    rec = Referee(tiny, device="cpu").play(f"{plugin}:Exporting", "none", seed=0).record
    forfeit = rec.metrics["forfeit"]
    assert forfeit["side"] == "attacker" and "only a model file (model:PATH)" in rec.reason, rec.reason
