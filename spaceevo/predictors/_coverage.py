"""What a predictor can answer, said when it is trained: block types it lacks, subnets it only sums.

A predictor of whole subnets needs a model for every block type of the subnets it is asked about and a
composition term learned from whole subnets; without them it either cannot answer or answers with the
plain sum of isolated blocks, which overestimates. Both are found at training time, written into the
manifest (``block_types_missing``, ``warnings``) and reported by ``train``, ``predict`` and ``validate``.
"""

from __future__ import annotations

from typing import Iterable

from spaceevo.space import get_hyperspace, list_hyperspaces

# Where the plain sum was measured against whole subnets (README, "Predictors": ort INT8, 1 thread, 2-core
# AMD EPYC, 50 unseen subnets of onnxw-151122-023231 at r160): the isolated blocks each pay the per-model
# overhead, so their sum overestimates the network.
PLAIN_SUM_ERROR = {"mape": 13.7, "acc_10pct": 4.0, "bias": "+14%"}
PLAIN_SUM_WARNING = (
    "no whole-subnet rows: subnet predictions are the plain sum of isolated blocks (no composition term); "
    f"where measured (ort INT8, 50 subnets) that sum was {PLAIN_SUM_ERROR['bias']} high, MAPE "
    f"{PLAIN_SUM_ERROR['mape']}%, {PLAIN_SUM_ERROR['acc_10pct']:.0f}% within +-10%. Profile whole subnets "
    "(`spaceevo profile --subnets N`) into the same store and retrain")


def _hyperspaces_of(types: set[str], spaces: Iterable[str]) -> list[str]:
    named = sorted({str(s).split("-", 1)[0] for s in spaces})
    if named:
        return [h for h in named if h in list_hyperspaces()]
    best = max((len(types & set(get_hyperspace(h).block_types)), h) for h in list_hyperspaces())
    return [h for h in list_hyperspaces()
            if len(types & set(get_hyperspace(h).block_types)) == best[0] and best[0] > 0]


def block_type_coverage(trained: Iterable[str], spaces: Iterable[str] = ()) -> tuple[dict, list[str]]:
    """The block types each relevant hyperspace needs that ``trained`` lacks, and warnings about them.

    Parameters
    ----------
    trained : iterable of str
        Block types the predictor has a model for.
    spaces : iterable of str
        Search spaces of the training subnets, if any (they name the hyperspace); otherwise the hyperspaces
        sharing the most block types with ``trained`` are checked.

    Returns
    -------
    missing : dict
        ``{hyperspace: [block types without a model]}``.
    warnings : list of str
        One warning per hyperspace whose fixed blocks (in every subnet) lack a model: no subnet of it can
        be predicted.
    """
    types = set(trained)
    missing, warnings = {}, []
    for h in _hyperspaces_of(types, spaces):
        hyper = get_hyperspace(h)
        lack = sorted(set(hyper.block_types) - types)
        missing[h] = lack
        fixed = sorted(set(hyper.fixed_block_types) - types)
        if fixed:
            warnings.append(f"no model for {', '.join(fixed)}, which every {h} subnet contains: this predictor "
                            f"cannot predict {h} subnets; profile them (`spaceevo profile --subnets N`, or a "
                            "--limit profile keeps the fixed blocks by default) and retrain")
    return missing, warnings
