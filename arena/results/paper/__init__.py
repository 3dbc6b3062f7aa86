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

Verdict rule (``SeedStat.verdict`` and ``judge``). A statistic may carry the
paper's *size of effect*: the least its words or numbers claim, on our scale
("over 10 points of clean accuracy", "far higher NSR"), with where it comes
from; claims of a sign or an order carry none.

- **agrees**: every judged statistic's 95% interval excludes 0 on the paper's
  side *and* still reaches the paper's size of effect (its upper end is at
  least that size): our data are compatible with the effect the paper states,
  not only with its sign;
- **contradicts**: some statistic's interval lies on the opposite side of 0;
- **inconclusive**: otherwise: an interval covers 0, one seed gives none, or
  it is on the paper's side but stops short of the paper's size (the page
  says which); also a claim whose compared settings differ in more than the
  knob it is about (``confounded``: Remark 11's training budgets), whichever
  way the numbers point;
- **untested**: a statistic has no seed with the matches it needs (the why
  line names the missing agents and setting);
- **not comparable**: the arena cannot create the paper's condition (training
  on another dataset, downstream fine-tuning, attribution maps, a threshold
  the paper never states...): why says so, and numbers we do have are shown.

How matches are counted. A trojan that failed the attacker gate counts as a
failed attack (ASR 0) in attack statistics, and is left out of defense
statistics (it never met the defence); where that changes a number, the same
statistic at the trojan's measured ASR is printed beside it, marked as not
judged. An inspector's flag counts as a detection only when its suspected
target is the true target (Remark 6; the any-target rate is printed beside
it). Matches of an attack that did not work (undefended ASR under
``WORKING_ASR`` in that match) are left out of defense statistics (ARD, TPR,
flags, AIV, MJS): a defense cannot reduce or detect a backdoor that is not
there, and the paper's attacks all work in its defense tables.

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
from arena.results.paper.settings import Context, Setting, cells_of, classify_variant, make_setting

__all__ = ["ATTACKS", "CLAIMS", "DEFENSES", "PAPER_ORDER", "TABLE8_ARD", "VERDICTS", "WORKING_ASR", "Claim",
           "Context", "Evidence", "Finding", "SeedStat", "Setting", "build_context", "cells_of", "classify_variant", "evaluate",
           "kendall_tau_b", "make_setting", "render"]
