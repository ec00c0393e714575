"""The one-shot N-way protocol on hand-made embeddings whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from _harness import benchmarks_dir
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def one_shot(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import _one_shot

    return _one_shot


def _classes(count: int, per_class: int, separable: bool) -> tuple[np.ndarray, list[str]]:
    labels = [f"c{c:02d}" for c in range(count) for _ in range(per_class)]
    centres = np.eye(count) * 10 if separable else np.zeros((count, count))
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, (count * per_class, count)) if separable else 0.0
    return np.repeat(centres, per_class, axis=0) + noise, labels


def test_separated_classes_are_always_found(one_shot) -> None:
    vectors, labels = _classes(25, 3, separable=True)
    figures = one_shot.one_shot_figures(vectors, labels, (5, 20), trials=300)
    assert figures["5-way"]["accuracy"] == 1.0 and figures["20-way"]["accuracy"] == 1.0
    assert figures["20-way"]["classes"] == 25 and figures["5-way"]["std_error"] == 0.0


def test_identical_embeddings_score_chance(one_shot) -> None:
    """All exemplars tie, the first wins.

    Correct exactly when the query's class is drawn first (1/N).
    """
    vectors, labels = _classes(25, 3, separable=False)
    for ways in (5, 20):
        result = one_shot.one_shot_accuracy(vectors, labels, ways, trials=4000, seed=1)
        assert result["accuracy"] == pytest.approx(1 / ways, abs=4 * result["std_error"] + 0.005)


def test_within_group_trials_draw_from_one_group(one_shot) -> None:
    """Group "easy" has separable classes, group "hard" identical ones: within-group trials score
    1 on easy and 1/N on hard, groups drawn evenly: (1 + 1/N) / 2; mixed trials score higher."""
    easy, easy_labels = _classes(10, 3, separable=True)
    hard = np.zeros_like(easy) + 50.0
    vectors = np.concatenate([easy, hard])
    labels = easy_labels + [f"h{c:02d}" for c in range(10) for _ in range(3)]
    group_of = {name: ("easy" if name.startswith("c") else "hard") for name in set(labels)}
    within = one_shot.one_shot_accuracy(vectors, labels, 5, 4000, seed=2, group_of=group_of)
    assert within["groups"] == 2
    assert within["accuracy"] == pytest.approx((1 + 1 / 5) / 2, abs=0.03)
    mixed = one_shot.one_shot_accuracy(vectors, labels, 5, 4000, seed=2)
    assert (
        mixed["accuracy"] > within["accuracy"] + 0.04
    )  # about 0.69: hard classes meet fewer rivals


def test_trials_the_set_cannot_hold_are_left_out(one_shot) -> None:
    vectors, labels = _classes(10, 2, separable=True)
    labels[-1] = "single"  # a class with one image can be neither exemplar-and-query nor counted
    figures = one_shot.one_shot_figures(
        vectors, labels, (5, 20), trials=50, group_of={c: "g" for c in set(labels)}
    )
    assert set(figures) == {"5-way", "5-way within script"}
    assert figures["5-way"]["classes"] == 9
    assert one_shot.one_shot_accuracy(vectors, labels, 20, 50) is None


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 8),
    st.integers(2, 4),
    st.integers(0, 2**31 - 1),
    st.sampled_from([2, 3, 5]),
)
def test_any_embedding_gives_a_proportion_reproducibly(
    classes: int, per_class: int, seed: int, ways: int
) -> None:
    import sys

    sys.path.insert(0, str(benchmarks_dir()))
    import _one_shot

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(classes * per_class, 3))
    labels = [str(c) for c in range(classes) for _ in range(per_class)]
    result = _one_shot.one_shot_accuracy(vectors, labels, ways, 40, seed=seed)
    if ways > classes:
        assert result is None
        return
    assert 0.0 <= result["accuracy"] <= 1.0 and result["trials"] == 40
    assert result == _one_shot.one_shot_accuracy(vectors, labels, ways, 40, seed=seed)
