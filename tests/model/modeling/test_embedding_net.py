"""EmbeddingNet, BN-neck and input normalisation against hand-written oracles."""

from __future__ import annotations

import pytest
import torch

from model.modeling.backbones.tiny_cnn import tiny_cnn
from model.modeling.bn_neck import BNNeck
from model.modeling.embedding_net import CLASSIFIER_INIT_STD, EmbeddingNet
from model.modeling.input_normalization import InputNormalization

EPS = 1e-5  # BatchNorm1d's default eps


def test_input_normalization() -> None:
    norm = InputNormalization((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    x = torch.rand(2, 3, 4, 5)
    expected = torch.stack(
        [(x[:, 0] - 0.1) / 0.5, (x[:, 1] - 0.2) / 0.25, (x[:, 2] - 0.3) / 2.0], dim=1
    )
    torch.testing.assert_close(norm(x), expected)
    assert list(norm.state_dict()) == []  # architecture, not checkpoint state


def test_forward_matches_oracle_in_training_mode() -> None:
    torch.manual_seed(0)
    net = EmbeddingNet(tiny_cnn(16), num_classes=7).train()
    with torch.no_grad():
        net.bn_neck.weight.uniform_(0.5, 1.5)
    x = torch.rand(6, 3, 32, 16)
    out = net(x)
    mean = torch.tensor(net.backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.backbone.std).view(1, 3, 1, 1)
    with torch.no_grad():  # same batch, training mode: the same batch statistics
        fmap = net.backbone((x - mean) / std)
    features = fmap.mean(dim=(2, 3))
    bn = (features - features.mean(0)) / torch.sqrt(features.var(0, unbiased=False) + EPS)
    embeddings = bn * net.bn_neck.weight
    assert net.classifier is not None
    logits = embeddings @ net.classifier.weight.T
    torch.testing.assert_close(out.features, features)
    torch.testing.assert_close(out.embeddings, embeddings, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-6)
    assert out.features.shape == out.embeddings.shape == (6, 16) and out.logits.shape == (6, 7)
    assert net.embedding_dim == 16


def test_embed_is_the_eval_bn_neck_output() -> None:
    torch.manual_seed(1)
    net = EmbeddingNet(tiny_cnn(8), num_classes=3)
    net.train()
    for _ in range(3):  # give the BN layers non-trivial running statistics
        net(torch.rand(5, 3, 24, 24))
    net.eval()
    x = torch.rand(4, 3, 24, 24)
    with torch.no_grad():
        out = net(x)
        emb = net.embed(x)
    rm, rv = net.bn_neck.running_mean, net.bn_neck.running_var
    torch.testing.assert_close(emb, out.embeddings)
    torch.testing.assert_close(
        emb, (out.features - rm) / torch.sqrt(rv + EPS) * net.bn_neck.weight, rtol=1e-5, atol=1e-6
    )


def test_features_embedding_is_the_pooled_feature_before_the_neck() -> None:
    torch.manual_seed(4)
    net = EmbeddingNet(tiny_cnn(8), num_classes=3, embedding="features")
    net.train()
    for _ in range(3):  # non-trivial neck statistics, which the embedding must not apply
        net(torch.rand(5, 3, 24, 24))
    net.eval()
    x = torch.rand(4, 3, 24, 24)
    mean = torch.tensor(net.backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.backbone.std).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = net.embed(x)
        out = net(x)
        pooled = net.backbone((x - mean) / std).mean(dim=(2, 3))
    torch.testing.assert_close(emb, pooled)
    assert not torch.allclose(emb, out.embeddings)  # the neck still feeds the classifier
    with pytest.raises(ValueError, match="bn_neck, features"):
        EmbeddingNet(tiny_cnn(8), num_classes=3, embedding="neck")


def test_inference_only_net_has_no_classifier() -> None:
    net = EmbeddingNet(tiny_cnn(8), num_classes=0).eval()
    out = net(torch.rand(3, 3, 16, 16))
    assert out.logits.shape == (3, 0)
    assert net.classifier is None
    assert not any(k.startswith("classifier") for k in net.state_dict())


def test_classifier_init_and_no_bias() -> None:
    torch.manual_seed(2)
    net = EmbeddingNet(tiny_cnn(64), num_classes=2000)
    assert net.classifier is not None and net.classifier.bias is None
    w = net.classifier.weight.detach()
    # 128,000 draws of N(0, 0.001): the sample std is within 1% of it.
    assert abs(float(w.std()) - CLASSIFIER_INIT_STD) < 0.01 * CLASSIFIER_INIT_STD
    assert abs(float(w.mean())) < 1e-5


def test_bn_neck_bias_stays_zero_after_an_optimizer_step() -> None:
    torch.manual_seed(3)
    net = EmbeddingNet(tiny_cnn(8), num_classes=4).train()
    neck = net.bn_neck
    assert isinstance(neck, BNNeck)
    assert torch.equal(neck.weight, torch.ones(8)) and torch.equal(neck.bias, torch.zeros(8))
    assert not neck.bias.requires_grad and neck.weight.requires_grad
    # All parameters handed to the optimiser, weight decay on: the frozen bias must not move.
    opt = torch.optim.Adam(net.parameters(), lr=0.1, weight_decay=0.1)
    weight_before = neck.weight.detach().clone()
    for _ in range(2):
        out = net(torch.rand(6, 3, 16, 16))
        loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3, 0, 1]))
        loss = loss + out.embeddings.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(neck.bias, torch.zeros(8))
    assert not torch.equal(neck.weight, weight_before)
