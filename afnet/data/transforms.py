"""Clip transforms: pure tensor functions, the same parameters for every frame.

Layout: a clip is a ``uint8`` tensor ``(T, 3, H, W)`` (decoders return it as a
channels-last view of ``(T, H, W, 3)`` memory, which is what the fast uint8
antialiased resize of :func:`torch.nn.functional.interpolate` wants).
:func:`normalize` turns it into ``float32 (T, 3, H, W)``.

Training (TSN)::

    clip --multi_scale_crop_box--> box --resized_crop--> (T,3,S,S) --hflip?--> normalize

Evaluation::

    clip --resize_short_side(256)--> center_crop(224) | three_crop(224) --> normalize

Random choices come from an explicit ``torch.Generator``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # top, left, height, width


def _check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"expected a clip of shape (T, 3, H, W), got {tuple(clip.shape)}")


def _choice(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))


def fixed_crop_offsets(height: int, width: int, crop_h: int, crop_w: int,
                       more_fix_crop: bool = True) -> list[tuple[int, int]]:
    """TSN's fixed crop positions ``(top, left)``: 4 corners + centre, and with
    ``more_fix_crop`` 8 more (edge midpoints and quarter points)."""
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    offsets = [(0, 0), (0, 4 * w_step), (4 * h_step, 0), (4 * h_step, 4 * w_step),
               (2 * h_step, 2 * w_step)]
    if more_fix_crop:
        offsets += [(2 * h_step, 0), (2 * h_step, 4 * w_step), (4 * h_step, 2 * w_step),
                    (0, 2 * w_step), (1 * h_step, 1 * w_step), (1 * h_step, 3 * w_step),
                    (3 * h_step, 1 * w_step), (3 * h_step, 3 * w_step)]
    return offsets


def multi_scale_crop_box(height: int, width: int, generator: torch.Generator, *,
                         scales=(1.0, 0.875, 0.75, 0.66), input_size: int = 224,
                         max_distort: int = 1, more_fix_crop: bool = True) -> Box:
    """TSN multi-scale crop: crop sides are ``scales`` x the short side (snapped to
    ``input_size`` when within 3 px), height and width scale indices differ by at
    most ``max_distort``; the position is one of :func:`fixed_crop_offsets`."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes)
             if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[_choice(len(pairs), generator)]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    offsets = fixed_crop_offsets(height, width, crop_h, crop_w, more_fix_crop)
    top, left = offsets[_choice(len(offsets), generator)]
    return top, left, crop_h, crop_w


def crop(clip: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop every frame to ``box = (top, left, height, width)`` (a view)."""
    top, left, h, w = box
    _check_clip(clip)
    if top < 0 or left < 0 or top + h > clip.shape[2] or left + w > clip.shape[3]:
        raise ValueError(f"crop box {box} outside frames of size {tuple(clip.shape[2:])}")
    return clip[:, :, top:top + h, left:left + w]


def resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) to ``size = (H, W)``; keeps dtype."""
    _check_clip(clip)
    if tuple(clip.shape[2:]) == tuple(size):
        return clip
    if clip.dtype == torch.uint8 and clip.device.type == "cpu":
        x = clip.contiguous(memory_format=torch.channels_last)
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    out = F.interpolate(clip.float(), size=size, mode="bilinear", antialias=True,
                        align_corners=False)
    if clip.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(clip.dtype)


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so that the short side is ``size``, keeping the aspect ratio."""
    h, w = clip.shape[2:]
    if h <= w:
        new = (size, max(1, round(w * size / h)))
    else:
        new = (max(1, round(h * size / w)), size)
    return resize(clip, new)


def resized_crop(clip: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """Crop ``box`` then resize to ``size x size``."""
    return resize(crop(clip, box), (size, size))


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size x size`` crop."""
    h, w = clip.shape[2:]
    if size > h or size > w:
        raise ValueError(f"center_crop({size}) larger than frames of size {(h, w)}")
    return crop(clip, ((h - size) // 2, (w - size) // 2, size, size))


def three_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Three ``size x size`` crops along the long side (start, centre, end),
    centred on the short side. Returns ``(3, T, 3, size, size)``."""
    h, w = clip.shape[2:]
    if size > h or size > w:
        raise ValueError(f"three_crop({size}) larger than frames of size {(h, w)}")
    if w >= h:
        top = (h - size) // 2
        boxes = [(top, left, size, size) for left in (0, (w - size) // 2, w - size)]
    else:
        left = (w - size) // 2
        boxes = [(top, left, size, size) for top in (0, (h - size) // 2, h - size)]
    return torch.stack([crop(clip, b) for b in boxes])


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean, std) -> torch.Tensor:
    """``uint8 (..., 3, H, W)`` -> ``float32`` ``(x / 255 - mean) / std``, contiguous."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0
    out = (clip.float() - mean_t) / std_t
    return out.contiguous()


# ---------------------------------------------------------------- pipelines
def train_transform(clip: torch.Tensor, config, generator: torch.Generator) -> torch.Tensor:
    """TSN training augmentation: multi-scale crop, resize to ``input_size``,
    horizontal flip (only when ``config.flip``), normalise. ``(T,3,S,S)`` float."""
    _check_clip(clip)
    box = multi_scale_crop_box(clip.shape[2], clip.shape[3], generator,
                               scales=config.scales, input_size=config.input_size)
    out = resized_crop(clip, box, config.input_size)
    if config.flip and bool(torch.rand(1, generator=generator) < 0.5):
        out = hflip(out)
    return normalize(out, config.mean, config.std)


def eval_transform(clip: torch.Tensor, config) -> torch.Tensor:
    """Evaluation: resize short side to ``scale_size``, then a centre crop
    (``num_crops=1``) or three crops (``num_crops=3``) of ``input_size``;
    normalise. Returns ``(num_crops, T, 3, S, S)`` float."""
    _check_clip(clip)
    scaled = resize_short_side(clip, config.scale_size)
    if config.num_crops == 3:
        crops = three_crop(scaled, config.input_size)
    else:
        crops = center_crop(scaled, config.input_size).unsqueeze(0)
    return normalize(crops, config.mean, config.std)
