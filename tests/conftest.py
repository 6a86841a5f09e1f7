import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
LAYOUTS = os.path.join(SHARED, "reference", "official_checkpoint_layouts.json")


def randomize(model: torch.nn.Module, seed: int = 0, nav_std: float = 3.0) -> torch.nn.Module:
    """Give BN statistics and navigation weights non-trivial values, so that eval-mode
    navigation keeps some frames and skips others, and F(0) carries real BN shifts."""
    from afnet.models.layers import Navigation

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, Navigation):
                m.conv2.weight.copy_(torch.randn(m.conv2.weight.shape, generator=g) * nav_std)
                m.conv2.bias.zero_()
    return model


@pytest.fixture
def layouts():
    import json

    with open(LAYOUTS) as f:
        return json.load(f)["layouts"]
