"""The one-shot N-way protocol of the literature (Lake et al.; Koch et al. 2015), on embedded rows.

A trial: N classes of the unseen set, one exemplar of each in the gallery, one query from one of
them (another image of its class); the trial is correct when the query's nearest exemplar
(Euclidean, as the gallery searches) is its own class's. Accuracy = correct / trials. Within-group
trials draw the N classes from one group (one script: the hard case); mixed trials from all.

Everything is drawn from a seeded generator over rows already embedded, so each method is embedded
once and every method sees the same trials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _trial_classes(
    rng: np.random.Generator,
    classes: np.ndarray,
    ways: int,
    groups: dict[str, np.ndarray] | None,
) -> np.ndarray:
    if groups is None:
        return rng.choice(classes, ways, replace=False)
    eligible = [members for members in groups.values() if len(members) >= ways]
    return rng.choice(eligible[rng.integers(len(eligible))], ways, replace=False)


def one_shot_accuracy(
    vectors: np.ndarray,
    labels: Sequence[str],
    ways: int,
    trials: int,
    seed: int = 0,
    group_of: dict[str, str] | None = None,
) -> dict[str, float | int] | None:
    """Accuracy of ``trials`` one-shot ``ways``-way trials.

    None when the set cannot hold such a trial.

    Args:
        vectors: one embedding per row.
        labels: the class of each row.
        ways: N, the classes per trial.
        trials: how many trials.
        seed: the trial generator's seed.
        group_of: class → group; when given, each trial's classes come from one group (groups with
            fewer than ``ways`` usable classes are never drawn).
    """
    labels = np.asarray(labels)
    rows_of = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    usable = np.array(sorted(c for c, rows in rows_of.items() if len(rows) >= 2))
    groups = None
    if group_of is not None:
        grouped: dict[str, list[str]] = {}
        for c in usable:
            grouped.setdefault(group_of[c], []).append(c)
        groups = {g: np.array(m) for g, m in grouped.items() if len(m) >= ways}
        if not groups:
            return None
    elif len(usable) < ways:
        return None
    rng = np.random.default_rng(seed)
    correct = 0
    for _ in range(trials):
        classes = _trial_classes(rng, usable, ways, groups)
        target = int(rng.integers(ways))
        exemplars = np.empty(ways, dtype=np.int64)
        query = -1
        for i, c in enumerate(classes):
            rows = rows_of[c]
            if i == target:
                exemplars[i], query = rng.choice(rows, 2, replace=False)
            else:
                exemplars[i] = rows[rng.integers(len(rows))]
        distances = np.linalg.norm(vectors[exemplars] - vectors[query], axis=1)
        correct += int(np.argmin(distances) == target)
    accuracy = correct / trials
    return {
        "accuracy": round(accuracy, 4),
        "trials": trials,
        "std_error": round(float(np.sqrt(accuracy * (1 - accuracy) / trials)), 4),
        "classes": len(usable),
        **({"groups": len(groups)} if groups is not None else {}),
    }


def one_shot_figures(
    vectors: np.ndarray,
    labels: Sequence[str],
    ways: Sequence[int] = (5, 20),
    trials: int = 2000,
    group_of: dict[str, str] | None = None,
) -> dict[str, dict]:
    """Mixed (and, with groups, within-group) accuracy for each N that the set can hold."""
    figures: dict[str, dict] = {}
    for n in ways:
        mixed = one_shot_accuracy(vectors, labels, n, trials, seed=n)
        if mixed is not None:
            figures[f"{n}-way"] = mixed
        if group_of is not None:
            within = one_shot_accuracy(vectors, labels, n, trials, seed=1000 + n, group_of=group_of)
            if within is not None:
                figures[f"{n}-way within script"] = within
    return figures
