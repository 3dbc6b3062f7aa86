"""The paper's names for the agents, and the numbers of its tables that claims are tested against."""

from __future__ import annotations

# --- the paper's names -------------------------------------------------------

ATTACKS: dict[str, str] = {"BN": "badnet", "TNN": "trojannn", "RB": "reflection", "TB": "targeted",
                           "LB": "latent", "ESB": "trojannet", "ABE": "abe", "IMC": "imc"}
DEFENSES: dict[str, str] = {"RS": "randomized-smoothing", "DU": "down-upsampling", "MP": "magnet",
                            "STRIP": "strip", "NEO": "neo", "AR": "adversarial-retraining", "FP": "fine-pruning",
                            "NC": "neural-cleanse", "DI": "deep-inspect", "TABOR": "tabor", "NI": "neuron-inspect",
                            "ABS": "abs", "AC": "activation-clustering", "SS": "spectral-signature"}
PAPER_ORDER = ("BN", "TNN", "RB", "TB", "LB", "ESB", "ABE", "IMC")  # the paper's column order
WORKING_ASR = 0.5  # an attack under this undefended ASR has no backdoor for a defense to act on

# --- the paper's numbers that orderings are tested against --------------------

# Table 5, CIFAR-10 column (|m| = 3, alpha = 0.8): ASR %.
TABLE5_CIFAR10_ALPHA08 = {"BN": 72.4, "TNN": 91.5, "RB": 52.1, "TB": 11.5, "LB": 100.0, "ESB": 10.3,
                          "ABE": 74.3, "IMC": 100.0}
# Table 5, ImageNet column with |m| = 3, alpha = 0 (the only alpha-0 column): ASR %.
TABLE5_IMAGENET_ALPHA0 = {"BN": 90.0, "TNN": 95.2, "RB": 94.6, "TB": 82.8, "LB": 97.4, "ESB": 100.0,
                          "ABE": 82.6, "IMC": 98.4}
# Table 8: ARD % (the table prints them as ASR changes, -x).
TABLE8_ARD = {
    "RS": {"BN": 0.5, "TNN": 0.0, "RB": 0.0, "TB": 0.3, "LB": 0.0, "ESB": 89.1, "ABE": 0.5, "IMC": 0.0},
    "DU": {"BN": 2.2, "TNN": 0.4, "RB": 5.4, "TB": 67.8, "LB": 4.1, "ESB": 89.9, "ABE": 0.5, "IMC": 0.2},
    "MP": {"BN": 6.0, "TNN": 37.4, "RB": 78.6, "TB": 11.0, "LB": 42.6, "ESB": 87.8, "ABE": 4.6, "IMC": 16.0},
    "FP": {"BN": 82.9, "TNN": 86.5, "RB": 89.1, "TB": 38.0, "LB": 27.6, "ESB": 100.0, "ABE": 84.5, "IMC": 26.9},
    "AR": {"BN": 83.2, "TNN": 89.6, "RB": 89.8, "TB": 86.2, "LB": 90.1, "ESB": 100.0, "ABE": 85.3, "IMC": 89.7},
}
# Table 11: AIV of trojan models. ABS has seven values; the one left out is read as ESB, to which
# 5.3.3 (iii) says most inspectors are inapplicable.
TABLE11_AIV = {
    "NC": {"BN": 3.08, "TNN": 2.69, "RB": 2.48, "TB": 2.44, "LB": 2.12, "ESB": 0.04, "ABE": 2.67, "IMC": 1.66},
    "DI": {"BN": 0.54, "TNN": 0.46, "RB": 0.39, "TB": 0.29, "LB": 0.21, "ESB": 0.01, "ABE": 0.76, "IMC": 0.26},
    "TABOR": {"BN": 3.26, "TNN": 2.49, "RB": 2.32, "TB": 2.15, "LB": 2.01, "ESB": 0.89, "ABE": 2.44, "IMC": 1.89},
    "NI": {"BN": 1.28, "TNN": 0.59, "RB": 0.78, "TB": 1.11, "LB": 0.86, "ESB": 0.71, "ABE": 0.41, "IMC": 0.52},
    "ABS": {"BN": 3.02, "TNN": 4.16, "RB": 4.10, "TB": 15.55, "LB": 2.88, "ABE": 8.45, "IMC": 3.15},
}
# Table 13: running time in seconds (NVIDIA Quadro RTX 6000).
TABLE13_SECONDS = {"MP": 2.4e1, "NEO": 7.7e0, "STRIP": 1.8e-1, "AR": 1.7e4, "FP": 2.1e3, "NC": 1.8e3,
                   "TABOR": 4.2e3, "ABS": 1.9e3, "NI": 4.6e1, "DI": 4.1e2}


