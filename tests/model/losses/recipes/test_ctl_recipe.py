"""The CTL recipe's wiring against independent references (torch's CE, pytorch-metric-learning's
batch-hard triplet, the center formula)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer

from model.losses.center_loss import CenterLoss
from model.losses.centroid_triplet_loss import CentroidTripletLoss
from model.losses.recipes.ctl_recipe import ctl_recipe
from model.modeling.net_output import NetOutput


def test_ctl_recipe_terms_weights_and_registration() -> None:
    recipe = ctl_recipe(num_classes=7, feat_dim=5, center_weight=5e-4)
    assert [(t.name, t.weight) for t in recipe.terms] == [
        ("cross_entropy", 1.0),
        ("triplet", 1.0),
        ("center", 5e-4),
        ("centroid_triplet", 1.0),
    ]
    assert "losses.center.centers" in recipe.state_dict()
    assert [p.shape for p in recipe.parameters()] == [torch.Size([7, 5])]


def test_ctl_recipe_values_match_independent_references() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 3])
    n, d, num_classes = len(labels), 6, 4
    output = NetOutput(
        features=torch.randn(n, d, generator=gen, dtype=torch.float64),
        embeddings=torch.randn(n, d, generator=gen, dtype=torch.float64),
        logits=torch.randn(n, num_classes, generator=gen, dtype=torch.float64),
    )
    recipe = ctl_recipe(num_classes, d, margin=0.3, label_smoothing=0.2, center_weight=0.01)
    total, values = recipe(output, labels)

    plain = LpDistance(normalize_embeddings=False)
    triplet = TripletMarginLoss(margin=0.3, distance=plain, reducer=MeanReducer())
    centers = next(m for m in recipe.modules() if isinstance(m, CenterLoss)).centers.detach()
    f = output.features
    expected = {
        "cross_entropy": F.cross_entropy(output.logits, labels, label_smoothing=0.2).item(),
        "triplet": triplet(f, labels, BatchHardMiner(distance=plain)(f, labels)).item(),
        "center": ((f - centers.double()[labels]) ** 2).sum(dim=1).mean().item(),
        "centroid_triplet": CentroidTripletLoss(0.3)(f, labels).item(),
    }
    assert values == pytest.approx(expected, rel=1e-9)
    # The metric losses read the features, not the embeddings (BNNeck): those give other values.
    assert CentroidTripletLoss(0.3)(output.embeddings, labels).item() != pytest.approx(
        expected["centroid_triplet"]
    )
    weights = {"cross_entropy": 1.0, "triplet": 1.0, "center": 0.01, "centroid_triplet": 1.0}
    assert total.item() == pytest.approx(sum(weights[k] * v for k, v in expected.items()))
