"""Shared fixtures. Data-pipeline fixtures are prefixed ``data_``; the helpers behind them
live in ``tests/helpers.py``."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import LAYOUTS, frame_ids, frame_pattern, write_video

torch.set_num_threads(min(2, torch.get_num_threads()))


# torch's global generator (it draws the weights create_model initialises) seeded before each
# test module's fixtures and before each test: a test sees the same weights alone, with -k or
# in the whole suite, whatever ran before it.
@pytest.fixture(autouse=True, scope="module")
def _seed_module():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _seed_test():
    torch.manual_seed(0)


@pytest.fixture
def layouts():
    import json

    with open(LAYOUTS) as f:
        return json.load(f)["layouts"]


@pytest.fixture
def data_video_writer():
    """``write(path, num_frames, codec=..., pix_fmt=..., gop=..., rotation=..., pts=...)``."""
    return write_video


@pytest.fixture
def data_frame_pattern():
    """``pattern(i, height, width)``: the RGB frame ``i`` that the video writer writes."""
    return frame_pattern


@pytest.fixture
def data_frame_ids():
    """``ids(clip)``: frame numbers (modulo 47) of a decoded clip of the writer's pattern."""
    return frame_ids


@pytest.fixture(scope="session")
def data_synthetic(tmp_path_factory):
    """A tiny synthetic dataset (frames + mp4) shared by the data tests."""
    from afnet.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic(out, num_train=16, num_val=8, num_classes=8, num_frames=12, size=32,
                          seed=3)
