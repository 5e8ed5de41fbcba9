"""Label-smoothed cross-entropy against a hand-derived 2×3 example and torch's own CE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.losses.cross_entropy_label_smooth import CrossEntropyLabelSmooth


def test_two_by_three_by_hand() -> None:
    # Row 0: equal logits, log p = -ln 3 everywhere; targets sum to 1 -> loss ln 3.
    # Row 1: logits (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4); label 1, targets (1/30, 0.9 + 1/30, 1/30):
    # loss = (1/30)·ln 2 + (0.9 + 2/30)·2 ln 2 = ln 2 · (1.8 + 5/30).
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = (math.log(3.0) + math.log(2.0) * (1.8 + 5.0 / 30.0)) / 2.0
    loss = CrossEntropyLabelSmooth(num_classes=3, epsilon=0.1)(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_epsilon_zero_is_plain_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0]], dtype=torch.float64)
    loss = CrossEntropyLabelSmooth(3, epsilon=0.0)(logits, torch.tensor([2]))
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-12)


def test_matches_torch_label_smoothing_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 11, generator=gen, dtype=torch.float64) * 3.0
    labels = torch.randint(0, 11, (16,), generator=gen)
    ours = CrossEntropyLabelSmooth(11, epsilon=0.1)(logits, labels)
    theirs = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


def test_wrong_number_of_logits_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 4 logits"):
        CrossEntropyLabelSmooth(4)(torch.zeros(2, 3), torch.tensor([0, 1]))
