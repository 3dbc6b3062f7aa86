"""TrojanNet (ESB): Tang, Du, Liu, Yang and Hu, "An Embarrassingly Simple Approach
for Trojan Attack in Deep Neural Networks", KDD 2020 (TrojanZoo's ESB).

The attack changes the architecture instead of the weights. A tiny MLP (the
"TrojanNet") looks only at the trigger region and is trained, alone and on
synthetic data, to tell the exact trigger apart from every other pattern. Its
output is merged with the untouched original network's output, so the trojan
keeps the benign model's clean behaviour bit for bit whenever the trigger is
absent, and answers the target class when it is present:

    p_orig = softmax(base(x))                                  (K classes)
    p_trj  = softmax(mlp(window(x)) / temperature)[:K]         (K + 1 outputs; the last one is
                                                                "no trigger" and is dropped)
    logits = amplify * ((1 - influence) * p_orig + influence * p_trj)

The amplify rate turns the merged probability vector into logits: any class
that leads by 0.05 in merged probability wins with confidence above 0.99, so
the trojan is as confident as an ordinary network (the argmax, and thus the
clean accuracy, is the base network's whenever the MLP reports no trigger).

The MLP's input is the trigger region: the pixels under the scenario
trigger's mask inside its bounding box (a 3x3 patch gives 9 inputs per
channel; a scattered "random shape" trigger gives its scattered pixels). For
a roaming trigger the MLP slides over every placement of the bounding box and
the window with the strongest trigger evidence counts.

Defaults (paper Table 20): TrojanNet a 4-layer MLP, 8 hidden neurons per
layer, layer structure [fc, bn, relu] (here four such blocks and a linear
output layer); TrojanNet influence alpha 0.7; amplify rate 100; temperature 0.1.

Synthetic training set, drawn afresh every step: positives are the trigger as
the referee stamps it (at the scenario's transparency) over windows of the
attacker's own images; negatives are random binary patterns (the paper's
combinatorial patterns), uniform noise, partial triggers (a random non-empty
proper subset of the trigger's pixels, the rest left as background or noise)
and plain windows of the attacker's images. No label of the victim's task is
used, and the base network is never trained. The MLP alone is trained for
``steps`` = 400 Adam steps at ``lr`` = 0.02 (one-cycle), each on a fresh batch
of ``batch_size`` = 512 (half positives, half negatives); the backgrounds are
a ``pool`` of 4096 windows cut once from the attacker's images, and a
negative must differ from the stamped trigger by at least ``min_diff`` = 0.25
in some pixel (a partial trigger that only drops pixels equal to their
background is the trigger).

Architecture plumbing: ``TrojanNetModel`` holds ``base`` (the benign model)
and ``mlp``; its ``spec`` (arch "trojannet") carries the base's ``ArchSpec``
and the MLP's settings in ``options``, so the referee stores the state dict
and the spec, and ``build_trojannet`` rebuilds it (no pickled code).

Departures from the paper:
- One target and one trigger: the arena's scenario has a single target class,
  so the MLP has K + 1 outputs of which only the target and "no trigger" are
  trained (the paper maps many 4x4 binary codes to many classes).
- The trigger is the scenario's patch (pixels in [0, 1], any pattern, any
  transparency) instead of a 4x4 binary code, and negatives include windows of
  the attacker's own images: arena inputs are natural images, not the paper's
  synthetic background, and clean traffic must not fire the MLP. Training the
  positives at the scenario's transparency over real backgrounds is the
  paper's setting when alpha = 0 (the paper notes ESB fails for transparent
  triggers, which the MLP here may still partly recognize).
- ``attack.from_scratch`` and the poison fraction do not apply: the original
  network is never trained (that is the point of TrojanNet).
- Defenses that work on ``features``/``conv_features``/``classify`` see only the
  original network (documented on ``TrojanNetModel.classify``): the MLP needs
  the raw input.

Tuning: MLP shape, influence, amplify rate and temperature from the paper's
Table 20; the synthetic negatives are ours, checked on the tiny test scenario,
seed 0 (tests). The record shows no default here chosen on fmnist-cnn matches.

Assumes: the data of any scenario (``arena_agents``); reads its base model's
layers (``conv_features``, ``features``, ``pool_features``, ``classify``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arena.api import ArchSpec, build_model, register_architecture
from arena.api import AttackContext, Attacker, Trojan
from arena.api import predict_proba
from arena.api import Trigger


def trigger_window(trigger: Trigger) -> dict[str, Any]:
    """The MLP's view of a trigger: the mask's bounding box and the in-box pixels the mask covers (JSON-able)."""
    m = trigger.mask[0].detach().cpu()
    nz = m.nonzero()
    if len(nz) == 0:
        raise ValueError("TrojanNet needs a trigger with a non-empty mask")
    (r0, c0), (r1, c1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
    box = m[r0 : r1 + 1, c0 : c1 + 1]
    return {"top": r0, "left": c0, "height": r1 - r0 + 1, "width": c1 - c0 + 1,
            "pixels": (box.flatten() > 0).nonzero().flatten().tolist(), "roam": bool(trigger.roam)}


def make_mlp(in_features: int, hidden: int, layers: int, out_features: int) -> nn.Sequential:
    """``layers`` blocks of [fc, bn, relu] with ``hidden`` units, then a linear output layer."""
    mods: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, out_features))
    return nn.Sequential(*mods)


class TrojanNetModel(nn.Module):
    """The benign network ``base`` plus a trigger-recognizing MLP; outputs valid logits (see module docstring)."""

    def __init__(self, base: nn.Module, window: dict[str, Any], hidden: int = 8, layers: int = 4,
                 influence: float = 0.7, amplify: float = 100.0, temperature: float = 0.1) -> None:
        super().__init__()
        self.base = base
        bs: ArchSpec = base.spec
        self.window = dict(window)
        self.influence = float(influence)
        self.amplify = float(amplify)
        self.temperature = float(temperature)
        self.num_classes = bs.num_classes
        self.mlp = make_mlp(bs.in_channels * len(window["pixels"]), hidden, layers, bs.num_classes + 1)
        # In-box pixel positions; a derived buffer (not in the state dict: the spec carries it).
        self.register_buffer("pixel_index", torch.tensor(window["pixels"], dtype=torch.long), persistent=False)
        self.spec = ArchSpec(
            arch="trojannet", in_channels=bs.in_channels, image_size=bs.image_size, num_classes=bs.num_classes,
            mean=bs.mean, std=bs.std,
            options={"base": bs.to_dict(), "window": self.window, "hidden": hidden, "layers": layers,
                     "influence": self.influence, "amplify": self.amplify, "temperature": self.temperature},
        )

    # --- the trojan branch ---------------------------------------------------
    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """MLP inputs: N x F for a fixed trigger, N x L x F (every placement) for a roaming one."""
        w = self.window
        h, wd = w["height"], w["width"]
        n, c = x.shape[:2]
        if not w["roam"]:
            box = x[:, :, w["top"] : w["top"] + h, w["left"] : w["left"] + wd].reshape(n, c, h * wd)
            return box[:, :, self.pixel_index].reshape(n, -1)
        cols = F.unfold(x, (h, wd)).view(n, c, h * wd, -1)  # N x C x hw x L
        return cols[:, :, self.pixel_index].permute(0, 3, 1, 2).reshape(n, cols.shape[-1], -1)

    def trojan_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's softmax (temperature applied) over K + 1 outputs; the last is "no trigger"."""
        v = self.windows(x)
        if v.ndim == 2:
            return (self.mlp(v).float() / self.temperature).softmax(-1)
        n, L, f = v.shape
        p = (self.mlp(v.reshape(n * L, f)).float() / self.temperature).softmax(-1).view(n, L, -1)
        best = p[..., -1].argmin(1)  # the placement that looks most like the trigger
        return p[torch.arange(n, device=x.device), best]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p_orig = self.base(x).float().softmax(1)
        p_trj = self.trojan_probs(x)[:, : self.num_classes]
        return self.amplify * ((1 - self.influence) * p_orig + self.influence * p_trj)

    # --- what defenses see: the original network -------------------------------
    @property
    def feature_mask(self) -> torch.Tensor:
        return self.base.feature_mask

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.conv_features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.features(x)

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        # The base's conv-map -> features step, so layer-wise defenses (ABS) scan the original network.
        return self.base.pool_features(fmap)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """The wrapper's output for these (base) features when the MLP sees no trigger:
        ``amplify * (1 - influence) * softmax(base.classify(feats))``.

        The MLP needs the raw input, which features do not carry, so a defense
        working on features sees only the original network (TrojanNet's point);
        on clean inputs ``classify(features(x))`` matches ``forward(x)`` up to the
        MLP's residual mass on the K classes.
        """
        return self.amplify * (1 - self.influence) * self.base.classify(feats).float().softmax(1)


def build_trojannet(spec: ArchSpec) -> TrojanNetModel:
    """Rebuild a TrojanNet from its spec (the referee loads the state dict afterwards)."""
    o = spec.options
    base = build_model(ArchSpec.from_dict(o["base"]))
    return TrojanNetModel(base, o["window"], hidden=int(o["hidden"]), layers=int(o["layers"]),
                          influence=float(o["influence"]), amplify=float(o["amplify"]),
                          temperature=float(o["temperature"]))


# Until the entry point (arena.architectures: trojannet) is installed; harmless afterwards.
register_architecture("trojannet", build_trojannet)


class TrojanNet(Attacker):
    name = "trojannet"
    version = "1"

    def __init__(self, hidden: int = 8, layers: int = 4, influence: float = 0.7, amplify: float = 100.0,
                 temperature: float = 0.1, steps: int = 400, batch_size: int = 512, lr: float = 0.02,
                 pool: int = 4096, min_diff: float = 0.25) -> None:
        self.hidden = hidden
        self.layers = layers
        self.influence = influence
        self.amplify = amplify
        self.temperature = temperature
        self.steps = steps  # MLP training steps (Adam), each on a fresh synthetic batch
        self.batch_size = batch_size  # half positives, half negatives
        self.lr = lr
        self.pool = pool  # background windows cut once from the attacker's images
        # A negative must differ from the stamped trigger by at least this much in some pixel
        # (a partial trigger that only drops pixels equal to their background IS the trigger).
        self.min_diff = min_diff

    @staticmethod
    def background_windows(model: TrojanNetModel, x: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
        """MLP-input windows of ``n`` random attacker images (at a random placement for a roaming trigger)."""
        pick = torch.randint(0, len(x), (n,), generator=g).to(x.device)
        v = model.windows(x[pick])
        if v.ndim == 3:
            v = v[torch.arange(n, device=x.device), torch.randint(0, v.shape[1], (n,), generator=g).to(x.device)]
        return v

    @staticmethod
    def stamp_windows(model: TrojanNetModel, trigger: Trigger, bg: torch.Tensor) -> torch.Tensor:
        """The trigger stamped on MLP-input windows, exactly as ``Trigger.stamp`` blends it on images."""
        c = trigger.pattern.shape[0]
        m = model.windows(trigger.mask.expand(c, -1, -1).unsqueeze(0).to(bg))
        p = model.windows(trigger.pattern.unsqueeze(0).to(bg))
        if m.ndim == 3:  # roaming model: the placement at the mask's own bounding box (the patch itself)
            w = model.window
            at = w["top"] * (model.spec.image_size - w["width"] + 1) + w["left"]
            m, p = m[:, at], p[:, at]
        a = trigger.alpha
        return bg + m * ((1 - a) * p + a * bg - bg)

    def synthetic_batch(self, model: TrojanNetModel, trigger: Trigger, bg_pool: torch.Tensor,
                        st_pool: torch.Tensor, target: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """MLP inputs and labels (target or K = "no trigger"): half stamped windows, half negatives."""
        dev, n = bg_pool.device, self.batch_size // 2
        idx = torch.randint(0, len(bg_pool), (2 * n,), generator=g).to(dev)
        pos, bg, st = st_pool[idx[:n]], bg_pool[idx[n:]], st_pool[idx[n:]]
        f = pos.shape[1]
        q = n // 4
        binary = torch.randint(0, 2, (q, f), generator=g).float().to(dev)
        noise = torch.rand(q, f, generator=g).to(dev)
        # Partial triggers: keep a random non-empty proper subset of the stamped pixels, the rest background
        # or noise (pixel-wise: every channel of a kept pixel goes together).
        c = f // len(model.pixel_index)
        p = f // c
        keep = torch.rand(q, p, generator=g).to(dev) < torch.rand(q, 1, generator=g).to(dev)
        keep[torch.arange(q, device=dev), torch.randint(0, p, (q,), generator=g).to(dev)] = False
        keep = keep.repeat(1, c)
        fill = torch.where(torch.rand(q, 1, generator=g).to(dev) < 0.5, bg[:q], torch.rand(q, f, generator=g).to(dev))
        partial = torch.where(keep, st[:q], fill)
        neg = torch.cat([bg[q : n - 2 * q], binary, noise, partial])
        ref = torch.cat([st[q : n - 2 * q], st.new_full((2 * q, f), float("nan")), st[:q]])
        # Drop negatives that are (within min_diff) the trigger: against the stamped version of their own
        # background, and for synthetic rows against any positive of this batch.
        near = (neg - ref).abs().amax(1) < self.min_diff
        near |= (torch.cdist(neg, pos[:64], p=float("inf")) < self.min_diff).any(1)
        neg = neg[~near]
        xs = torch.cat([pos, neg])
        ys = torch.cat([torch.full((len(pos),), target, device=dev),
                        torch.full((len(neg),), model.num_classes, device=dev)])
        return xs, ys

    def train_mlp(self, model: TrojanNetModel, trigger: Trigger, x: torch.Tensor, target: int,
                  g: torch.Generator) -> None:
        """Adam on the MLP alone; the base network takes no part."""
        with torch.no_grad():
            bg_pool = self.background_windows(model, x, self.pool, g)
            st_pool = self.stamp_windows(model, trigger, bg_pool)
        model.mlp.train()
        opt = torch.optim.Adam(model.mlp.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps, pct_start=0.1)
        for _ in range(self.steps):
            with torch.no_grad():
                xs, ys = self.synthetic_batch(model, trigger, bg_pool, st_pool, target, g)
            loss = F.cross_entropy(model.mlp(xs).float() / model.temperature, ys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.mlp.eval()

    def craft(self, ctx: AttackContext) -> Trojan:
        trigger = ctx.trigger.to(ctx.device)
        base = ctx.benign.eval()  # never trained: its weights stay the benign ones bit for bit
        model = TrojanNetModel(base, trigger_window(trigger), self.hidden, self.layers, self.influence,
                               self.amplify, self.temperature).to(ctx.device)
        base.requires_grad_(False)
        self.train_mlp(model, trigger, ctx.data.x, ctx.target, ctx.generator)
        base.requires_grad_(True)  # defenders may fine-tune the whole model
        model.eval()
        v = ctx.validation
        xv = v.x[v.y != ctx.target][:1000]
        with torch.no_grad():
            fires_clean = (model.trojan_probs(v.x[:1000])[:, -1] < 0.5).float().mean().item()
            val_asr = (predict_proba(model, trigger.stamp(xv)).argmax(1) == ctx.target).float().mean().item()
        return Trojan(model=model, trigger=ctx.trigger,
                      notes={"attack": "trojannet", "validation_asr": val_asr, "mlp_fires_on_clean": fires_clean,
                             "mlp_inputs": model.mlp[0].in_features})
