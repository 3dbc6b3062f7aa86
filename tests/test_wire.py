"""The referee-agent wire format: JSON plus raw tensor bytes, never pickle (arena.engine.wire)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from arena.api.triggers import Trigger
from arena.engine import wire
from arena.engine.messages import AGENT_TYPES, AgentCard, check_answer


def test_values_round_trip_bit_for_bit():
    g = torch.Generator().manual_seed(7)
    value = {"tuple": (1, 2.5, "x", None, True), "list": [1, [2]], "t": torch.randn(3, 4),
             "ints": torch.arange(5), "bool": torch.tensor([True, False]), "half": torch.ones(2, dtype=torch.bfloat16),
             "empty": torch.empty(0, 3), "scalar": torch.tensor(3.0), "gen": g, "dev": torch.device("cpu"),
             "trigger": Trigger(torch.rand(1, 3, 3), torch.rand(1, 3, 3), 0.2, True)}
    back = wire.decode(wire.encode(value), {"Trigger": Trigger})
    assert back["tuple"] == value["tuple"] and back["list"] == value["list"] and back["dev"] == value["dev"]
    for k in ("t", "ints", "bool", "half", "empty", "scalar"):
        assert back[k].dtype == value[k].dtype and torch.equal(back[k], value[k])
    assert torch.equal(torch.rand(4, generator=back["gen"]), torch.rand(4, generator=torch.Generator().manual_seed(7)))
    assert back["trigger"].roam is True and torch.equal(back["trigger"].mask, value["trigger"].mask)


def test_only_named_dataclasses_are_built():
    frame = wire.encode(Trigger(torch.ones(1, 2, 2), torch.ones(1, 2, 2)))
    with pytest.raises(wire.WireError, match="'Trigger' is not accepted"):
        wire.decode(frame)


def test_a_str_subclass_crosses_as_a_plain_str():
    class Evil(str):
        def __reduce__(self):
            raise AssertionError("never called")

    back = wire.decode(wire.encode({"category": Evil("model_inspection")}))
    assert type(back["category"]) is str and back["category"] == "model_inspection"


def test_objects_the_format_does_not_know_are_refused_when_sent():
    class Boom:
        pass

    with pytest.raises(TypeError, match="Boom cannot cross"):
        wire.encode({"notes": Boom()})


def _raw(header: bytes) -> bytes:
    """A frame with this JSON header and no tensor bytes, as a hostile agent would write it by hand."""
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize("frame", [
    pickle.dumps(("ok", 1)),  # a pickle is not a frame
    b"\x05\x00\x00\x00\x00\x00\x00\x00{\"v\":",  # truncated header
    wire.encode(torch.ones(4))[:-3],  # buffer shorter than described
    wire.encode(torch.ones(4)) + b"x",  # trailing bytes
    wire.encode({"$dc": "AgentCard", "f": {"role": "attacker", "evil": 1}}),  # "$" keys are tags
    # What the parsers themselves refuse is the sender's garbage too, never the referee's error:
    _raw(b'{"v":' + b"1" * 5000 + b',"b":[]}'),  # an integer past Python's digit limit (ValueError)
    _raw(b'{"v":' + b"[" * 100_000 + b"]" * 100_000 + b',"b":[]}'),  # past the recursion limit
    _raw(b'{"v":{"$t":0},"b":[{"dtype":"float32","shape":[0,1180591620717411303424],"nbytes":0}]}'),  # int64
])
def test_malformed_frames_are_refused(frame):
    with pytest.raises(wire.WireError):
        wire.decode(frame, AGENT_TYPES)


def test_an_extra_field_is_refused_and_field_types_are_checked():
    card = AgentCard("attacker", "x", "1", {})
    frame = bytearray(wire.encode(card))
    assert wire.decode(bytes(frame), AGENT_TYPES) == card
    assert check_answer("card", card) is None
    assert "wrong types" in check_answer("card", dataclasses.replace(card, version=[1]))
    assert "not a AgentCard" in check_answer("card", {"role": "attacker"})
    assert "not a tensor" in check_answer("predict", [0.1, 0.9])


@pytest.mark.parametrize("text", ["\x1b]0;pwned\x07", "\x1b[2J", "ok\rdefender forfeits", "admin\u202egnp.exe",
                                  "zero\u200bwidth", "\x9b31m", "word\u2060joiner", "\ufeffbom", "arabic\u061cmark",
                                  "lone \ud800 surrogate"])
def test_strings_with_control_characters_are_refused(text):
    # Terminal escapes and invisible bidirectional marks: an agent's strings are printed and stored.
    for value in ({"note": text}, {text: 1}, [text]):
        with pytest.raises(wire.WireError, match="control character"):
            wire.decode(wire.encode(value))
    assert wire.decode(wire.encode({"multi-line": "a\n\tb"})) == {"multi-line": "a\n\tb"}  # tab, newline: fine


def test_a_model_spec_the_state_does_not_fill_is_refused_before_it_is_built(monkeypatch):
    """A trojan's spec comes from the agent: 2 million classes would be a 1 GB layer allocated and
    initialised in the referee before load_state_dict objected. It is checked on the meta device first."""
    import arena.plugins
    from arena.api.models import ArchSpec, build_model

    spec = ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,))
    state = build_model(spec).state_dict()
    built_on: list[str] = []
    real = arena.plugins.build_model
    monkeypatch.setattr(arena.plugins, "build_model", lambda s: built_on.append(str(torch.empty(0).device)) or real(s))
    huge = dataclasses.replace(spec, num_classes=2_000_000).to_dict()
    with pytest.raises(ValueError, match="does not fit"):
        arena.plugins.rebuild_model(huge, state)
    assert built_on == ["meta"]  # never on a real device
    built_on.clear()
    model = arena.plugins.rebuild_model(spec.to_dict(), state)  # a spec that fits: built for real, loaded
    assert built_on == ["meta", "cpu"] and all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
