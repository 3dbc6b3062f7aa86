"""The TrojanZoo paper's claims, checked against stored matches (``arena paper``).

Each of the paper's Remarks 1-16, and the orderings of its Tables 5, 8 and 11,
is a ``Claim``: the claim in our words with the paper's numbers (each cited to
its table, figure or section), the arena metric and agents it concerns, and a
function that computes our evidence from ``MatchRecord``s. ``render`` turns the
verdicts into one Markdown page (docs/paper.md).

Why a module and not a hand-written page: the verdicts must follow from the
stored matches alone, so that the page can be regenerated after every
tournament and nobody's reading of a table slips in. Every paper number below
is in the paper's text; every number of ours comes from the records.

How evidence is computed. The seed is the independent unit (the matches of one
seed share its benign model and trojans), so each claim reduces the matches of
a seed to one number -- a paired difference (e.g. ASR at alpha 0 minus ASR at
alpha 0.8 for the same attackers and seed), or a Kendall tau-b between the
paper's column and ours -- and reports the mean over seeds with its 95%
Student-t interval (n seeds stated).

Verdict rule (``SeedStat.verdict`` and ``_judge``):

- **agrees**: every statistic's 95% interval lies on the paper's side of 0;
- **contradicts**: some statistic's interval lies on the opposite side;
- **inconclusive**: otherwise (an interval covers 0, or one seed: no interval);
- **untested**: a statistic has no seed with the matches it needs (the why
  line names the missing agents and setting);
- **not comparable**: the arena cannot create the paper's condition (training
  on another dataset, downstream fine-tuning, attribution maps...): why says so.

Matches of an attack that did not work (undefended ASR under ``WORKING_ASR`` in
that match) are left out of defense statistics (ARD, TPR, flags, AIV, MJS): a
defense cannot reduce or detect a backdoor that is not there, and the paper's
attacks all work in its defense tables.

The package, by what a reader looks for:

- ``numbers``: the paper's names for agents and the numbers from its tables;
- ``evidence``: per-seed statistics, their intervals and the verdict rule;
- ``settings``: which stored matches a claim reads (main setting, variants);
- ``claims``: each claim and the function that computes our evidence;
- ``page``: the Markdown page.
"""

from arena.results.paper.claims import CLAIMS, Claim
from arena.results.paper.evidence import VERDICTS, Evidence, SeedStat, kendall_tau_b
from arena.results.paper.numbers import ATTACKS, DEFENSES, PAPER_ORDER, TABLE8_ARD, WORKING_ASR
from arena.results.paper.page import Finding, build_context, evaluate, render
from arena.results.paper.settings import Context, Setting, classify_variant, make_setting

__all__ = ["ATTACKS", "CLAIMS", "DEFENSES", "PAPER_ORDER", "TABLE8_ARD", "VERDICTS", "WORKING_ASR", "Claim",
           "Context", "Evidence", "Finding", "SeedStat", "Setting", "build_context", "classify_variant", "evaluate",
           "kendall_tau_b", "make_setting", "render"]
