import pytest
import torch

from afnet.data.presets import get_preset
from afnet.data.sampling import sample_generator
from afnet.data.transforms import (
    center_crop,
    eval_transform,
    fixed_crop_offsets,
    multi_scale_crop_box,
    normalize,
    resize_short_side,
    three_crop,
    train_transform,
)


def clip_of(frame, t=6):
    return frame.unsqueeze(0).expand(t, -1, -1, -1).contiguous()


def asym_frame(h=120, w=160):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("preset", ["sthv1", "minikinetics"])
def test_train_transform_same_params_on_all_frames(preset):
    cfg = get_preset(preset, input_size=112, scale_size=128)
    clip = clip_of(asym_frame())
    for k in range(20):
        out = train_transform(clip, cfg, sample_generator(0, 0, k))
        assert out.shape == (6, 3, 112, 112) and out.dtype == torch.float32
        assert all(torch.equal(out[0], out[i]) for i in range(1, 6))


def test_no_flip_for_direction_datasets():
    frame = torch.zeros(3, 64, 64, dtype=torch.uint8)
    frame[:, :, :32] = 255  # left half white
    clip = clip_of(frame, 2)
    for name in ("sthv1", "sthv2", "jester"):
        cfg = get_preset(name, input_size=64, scale_size=64, scales=(1.0,))
        for k in range(30):
            out = train_transform(clip, cfg, sample_generator(0, 0, k))
            assert out[0, 0, 32, 0] > out[0, 0, 32, -1]  # left stays left
    cfg = get_preset("kinetics", input_size=64, scale_size=64, scales=(1.0,))
    sides = {bool(train_transform(clip, cfg, sample_generator(0, 0, k))[0, 0, 32, 0] > 0)
             for k in range(30)}
    assert sides == {True, False}


def test_multi_scale_box_sizes_and_bounds():
    for h, w in [(240, 320), (256, 340), (100, 176), (320, 240)]:
        base = min(h, w)
        allowed = {224 if abs(int(base * s) - 224) < 3 else int(base * s)
                   for s in (1, .875, .75, .66)}
        for k in range(50):
            top, left, ch, cw = multi_scale_crop_box(h, w, sample_generator(0, 0, k))
            assert ch in allowed and cw in allowed
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
    offs = fixed_crop_offsets(100, 200, 60, 60, more_fix_crop=False)
    assert offs == [(0, 0), (0, 140), (40, 0), (40, 140), (20, 70)]


def test_eval_transform_shapes_and_crops():
    cfg = get_preset("sthv1")
    clip = clip_of(asym_frame(240, 320), 4)
    one = eval_transform(clip, cfg)
    assert one.shape == (1, 4, 3, 224, 224)
    three = eval_transform(clip, get_preset("sthv1", num_crops=3))
    assert three.shape == (3, 4, 3, 224, 224)
    assert torch.allclose(three[1], one[0])  # middle of three = centre crop
    scaled = resize_short_side(clip, 256)
    assert scaled.shape[2:] == (256, 341)
    tc = three_crop(scaled, 224)
    assert torch.equal(tc[0], scaled[:, :, 16:240, 0:224])
    assert torch.equal(tc[2], scaled[:, :, 16:240, 341 - 224:])
    assert torch.equal(center_crop(scaled, 224), tc[1])


def test_identical_frames_stay_identical_in_eval():
    clip = clip_of(asym_frame(), 5)
    out = eval_transform(clip, get_preset("jester", num_crops=3))
    assert all(torch.equal(out[c, 0], out[c, t]) for c in range(3) for t in range(5))


def test_normalize():
    clip = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(clip, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert out.dtype == torch.float32 and out.shape == clip.shape
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([(1 - .485) / .229, (1 - .456) / .224,
                                                         (1 - .406) / .225]), atol=1e-5)
