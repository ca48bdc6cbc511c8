"""MoCo v3's heads against the official layout (facebookresearch/moco-v3 ``moco/builder.py``): every
Linear bias-free; BatchNorm + ReLU after each hidden Linear; the projector ends with a BatchNorm
without affine parameters; the predictor too for a ViT (``MoCo_ViT``), not for a ResNet (``MoCo_ResNet``)."""

from __future__ import annotations

import torch
from torch import nn

from tests.tiny import TINY_RESNET, tiny_inputs, tiny_model


def official_layout(num_layers: int, input_dim: int, hidden_dim: int, output_dim: int, last_bn: bool) -> list[tuple]:
    """The official MLP described as (kind, in, out, bias / affine) rows, from the builder's rules."""
    rows: list[tuple] = []
    for layer in range(num_layers):
        width_in = input_dim if layer == 0 else hidden_dim
        width_out = output_dim if layer == num_layers - 1 else hidden_dim
        rows.append(("Linear", width_in, width_out, False))
        if layer < num_layers - 1:
            rows += [("BatchNorm1d", width_out, width_out, True), ("ReLU",)]
        elif last_bn:
            rows.append(("BatchNorm1d", width_out, width_out, False))
    return rows


def layout(head: nn.Module) -> list[tuple]:
    rows: list[tuple] = []
    for module in head:
        if isinstance(module, nn.Linear):
            rows.append(("Linear", module.in_features, module.out_features, module.bias is not None))
        elif isinstance(module, nn.BatchNorm1d):
            rows.append(("BatchNorm1d", module.num_features, module.num_features, module.affine))
        else:
            rows.append((type(module).__name__,))
    return rows


def test_the_vit_heads_follow_the_official_moco_vit():
    model = tiny_model("moco_v3")  # tiny ViT, 3-layer projector 32 -> 32 -> 16, predictor 16 -> 32 -> 16
    config = model.config
    hidden = model.backbone.config.hidden_size
    assert layout(model.projector) == official_layout(3, hidden, config.projection_hidden_dim, config.projection_dim, True)
    assert layout(model.predictor) == official_layout(2, config.projection_dim, config.prediction_hidden_dim,
                                                      config.projection_dim, True)
    assert layout(model.teacher_projector) == layout(model.projector)


def test_the_resnet_predictor_follows_the_official_moco_resnet_and_the_choice_can_be_set():
    model = tiny_model("moco_v3", backbone_config=TINY_RESNET, projection_num_layers=2)
    config = model.config
    assert layout(model.projector) == official_layout(2, 32, config.projection_hidden_dim, config.projection_dim, True)
    assert layout(model.predictor) == official_layout(2, config.projection_dim, config.prediction_hidden_dim,
                                                      config.projection_dim, False)
    forced = tiny_model("moco_v3", backbone_config=TINY_RESNET, prediction_last_batch_norm=True)
    assert layout(forced.predictor)[-1] == ("BatchNorm1d", 16, 16, False)


def test_the_queries_leave_the_predictor_standardised():
    model = tiny_model("moco_v3").train()
    features = torch.randn(8, model.config.projection_dim)
    queries = model.predictor(features)  # (8, projection_dim): the non-affine BN's batch statistics
    torch.testing.assert_close(queries.mean(0), torch.zeros(queries.shape[1]), atol=1e-5, rtol=0)
    assert torch.isfinite(model(**tiny_inputs("moco_v3")).loss)
