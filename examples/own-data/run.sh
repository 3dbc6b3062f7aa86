#!/usr/bin/env bash
# Your data, a match on it, and a scan of a model you were handed: from nothing, in a few minutes
# on a laptop CPU. Run from anywhere; everything is written to the folder given (default ./own-data-demo).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
arena="${ARENA:-arena}"
python="${PYTHON:-python}"
work="${1:-own-data-demo}"
mkdir -p "$work" && cd "$work"

# 1. An image folder: train/<class>/*.png and test/<class>/*.png (here 6 classes of 24x24 shapes).
"$python" "$here/make_shapes.py" shapes

# 2. A scenario for it: the default scenario's settings, with the dataset described, not named.
cat > shapes.toml <<'EOF'
name = "shapes"
based_on = "fmnist-cnn"
seeds = [0]
development_seeds = []

[dataset]
folder = "shapes"

[training]
epochs = 8
retrain_epochs = 3

[attack]
poison_fraction = 0.1

[trigger]
size = 3

[scoring]
inputs = 200
EOF

# 3. A match on it.
"$arena" match badnet strip -s shapes.toml

# 4. "A model you were handed": here, a badnet trojan and a clean model of this scenario, saved as
#    state dicts (torch.save(model.state_dict(), PATH)) through the Python API.
"$python" - <<'EOF'
import torch
from arena.config.scenario import load_scenario
from arena.engine.referee import Referee

referee = Referee(load_scenario("shapes.toml"))
torch.save(referee.craft("badnet", 0).model.state_dict(), "suspect.pt")
torch.save(referee.benign(0, member=50)[0].state_dict(), "clean.pt")  # not one of the controls
EOF

# 5. Scan both: every model inspector, each calibrated on 9 benign models of the scenario.
"$arena" scan suspect.pt -s shapes.toml --population 9
"$arena" scan clean.pt -s shapes.toml --population 9
