"""The one surface an agent imports: ``from arena.api import Attacker, Trojan, fit, ...``.

Everything an attacker or defender plugin needs is re-exported here, so a
plugin author reads this package alone (the modules beside this file hold the
details):

- the contract (``protocol``): ``Attacker``, ``Defender``, their contexts,
  ``Trojan``, ``Deployment``, ``Verdict``, the defender ``CATEGORIES``;
- the views (``views``): what each side may know of the scenario and opponent;
- defense category bases (``defenses``): ``InputReformer``, ``InputFilter``,
  ``ModelSanitizer``, ``ModelInspector`` and their helpers;
- data and model types: ``Tensors``, ``DatasetInfo``, ``ArchSpec``,
  ``build_model``, ``register_architecture``, ``clone``;
- triggers (``triggers``) and poisoning (``poison``);
- training helpers (``training``): ``fit``, ``predict_proba``, ``accuracy``, ``features``.

Imports below ``arena.api`` (``arena.core``, ``arena.config``) are the layers
this one stands on; nothing here imports the engine, the plugins or the CLI.
"""

from arena.api.defenses import (MAD_CONSISTENCY, InputFilter, InputReformer, Inspection, ModelInspector,
                                ModelSanitizer, anomaly_indices, frozen, inference_copy, seed_from, split_clean)
from arena.api.generic import ContractError, with_contract
from arena.api.exported import ProgramError, exported_model, exported_spec, is_exported_program, read_program
from arena.api.models import ArchSpec, ArenaModel, build_model, clone, known_architectures, register_architecture
from arena.api.poison import MIXING_LEVELS, Poisoner, poison_batch
from arena.api.protocol import (CATEGORIES, Agent, AttackContext, Attacker, DefenseContext, Defender, Deployment,
                                RoundRecord, Trojan, Verdict, calibrate_threshold)
from arena.api.training import (Progress, accuracy, batch_augment, features, features_and_predictions, fit,
                                make_optimizer, predict_proba)
from arena.api.triggers import Trigger, make_trigger, mask_jaccard
from arena.api.views import AttackerScenario, DefenderScenario, RevealedDefender
from arena.config.datasets import DatasetInfo, Tensors

__all__ = [
    "CATEGORIES", "MAD_CONSISTENCY", "MIXING_LEVELS", "Agent", "ArchSpec", "ArenaModel", "AttackContext",
    "Attacker", "AttackerScenario", "ContractError", "DatasetInfo", "Defender", "DefenderScenario",
    "DefenseContext", "Deployment", "InputFilter", "InputReformer", "Inspection", "ModelInspector",
    "ModelSanitizer", "Poisoner", "ProgramError", "Progress", "RevealedDefender", "RoundRecord", "Tensors",
    "Trigger", "Trojan", "Verdict", "accuracy", "anomaly_indices", "batch_augment", "build_model",
    "calibrate_threshold", "clone", "exported_model", "exported_spec", "features", "features_and_predictions",
    "fit", "frozen", "inference_copy", "is_exported_program", "known_architectures", "make_optimizer",
    "make_trigger", "mask_jaccard", "poison_batch", "predict_proba", "read_program", "register_architecture",
    "seed_from", "split_clean", "with_contract",
]
