"""ONNX export of a checkpoint, and ONNX Runtime inference through the same decoding and reporting.

::

    checkpoint ──load_model_for_inference──> model (eval, BN folded) ──configure(execution)──>
        GraphOutputs(model): the model's own forward, its VideoOutput as graph outputs
        ──torch.onnx.export (torch.export)──> model.onnx + metadata_props (read_onnx_metadata)
    model.onnx ──load_onnx_for_inference──> InferenceModel whose model is an OnnxModel (ONNX Runtime)
        ──read_sample / run_model / predict_sample / explain_video──> as for a checkpoint

What the graph computes is what ``model(video)`` computes in eval: the export traces the
model's real ``forward``. Executions:

- ``sparse``: the focal branch gathers the frames it keeps, computes only those and scatters
  them back (gather and scatter in the graph). Shapes must be static, so the number of
  frames kept per video must be known at export: learned navigation with a ``ratio`` (the
  static-k policy: exactly ``round(ratio * T)`` frames per video and navigation point, those
  with the largest keep-minus-skip margin) or the ``uniform`` policy.
- ``masked``: every frame computed, the skipped ones with a zeroed input (the authors'
  execution); any deterministic selection, the learned threshold included.

Graph inputs and outputs: ``video`` float ``(B, T, 3, S, S)`` (normalised pixels, B dynamic)
-> ``logits`` ``(B, K)``, ``masks`` ``(B, P, T)`` (1 = the focal branch computed the frame;
absent for models without navigation) and, for spatial models, ``regions.<point>``
``(B, T, g, g)`` per navigation point. The metadata (:class:`OnnxMetadata`) says how to read
and normalise a video for it, what its classes are called and how it selects frames.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import warnings
from dataclasses import MISSING, asdict, dataclass, field

import torch
from torch import nn

from afnet._imports import require
from afnet.data.presets import DatasetConfig
from afnet.errors import OptionError
from afnet.flops import count_flops
from afnet.inference.model import InferenceModel, load_model_for_inference, resolve_class_names
from afnet.io import commit, disk_full
from afnet.models.base import VideoOutput
from afnet.models.options import EXECUTIONS
from afnet.runtime import check_threads, resolve_device

METADATA_VERSION = 1
# Selections drawn at random per call (reproducible in torch by a seeded generator, not in a graph).
_DRAWN = ("random", "normal")


class GraphOutputs(nn.Module):
    """``model``'s own ``forward``, its :class:`VideoOutput` flattened into the graph's
    outputs: ``logits``, then ``masks`` stacked ``(B, P, T)`` (when the model has navigation
    points), then one ``(B, T, g, g)`` region mask per point (spatial models)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor):
        out = self.model(video)
        outputs = [out.logits]
        if out.masks:
            outputs.append(torch.stack([m.to(out.logits.dtype) for m in out.masks], dim=1))
        outputs += [r.to(out.logits.dtype) for r in out.regions]
        return tuple(outputs)


def output_names(points: list[str], spatial: bool) -> list[str]:
    """The graph's output names for a model with navigation points ``points``."""
    names = ["logits"]
    if points:
        names.append("masks")
    if spatial:
        names += [f"regions.{p}" for p in points]
    return names


@dataclass
class OnnxMetadata:
    """What ``afnet export`` records in the ONNX file's ``metadata_props`` (each value as JSON
    under the key of the field's name, plus ``afnet.version``): enough to read, normalise and
    report a video without the checkpoint. ``preprocessing``: the evaluation
    :class:`DatasetConfig` (sampling, resize, crop, mean and std) the checkpoint's videos are
    read with. ``gflops_per_view``: multiply-accumulates of one call per video, counted on the
    exported configuration (static shapes: the same every call)."""

    arch: str
    num_frames: int
    num_classes: int
    input_size: int
    mean: list[float]
    std: list[float]
    labels: list[str] | None
    selection: str
    ratio: float | None
    execution: str
    points: list[str]
    spatial: bool
    region_grid: list[int] | None
    shift: bool
    gflops_per_view: float
    outputs: list[str]
    preprocessing: dict
    source: str = ""
    checkpoint: str = ""
    exported_with: dict = field(default_factory=dict)

    def dataset_config(self) -> DatasetConfig:
        """The evaluation config a video is read with for this model."""
        known = set(DatasetConfig.__dataclass_fields__)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.preprocessing.items() if k in known}
        return DatasetConfig(**values)


def write_metadata(path: str | os.PathLike, meta: OnnxMetadata) -> None:
    """Record ``meta`` in the ``metadata_props`` of the ONNX file at ``path`` (rewritten in place)."""
    onnx = require("onnx", "writing ONNX metadata")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    props = {"afnet.version": str(METADATA_VERSION), **{k: json.dumps(v) for k, v in asdict(meta).items()}}
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | os.PathLike) -> OnnxMetadata:
    """The :class:`OnnxMetadata` of an ONNX file written by ``afnet export``. Raises
    FileNotFoundError, or ValueError naming the file when it is not an ONNX model or has no
    (or unreadable) afnet metadata."""
    onnxruntime = require("onnxruntime", "reading an ONNX model")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # only read it
    return _parse_metadata(str(path), _session(path, options))


class UnsafeModelFile(ValueError):
    """An ONNX file whose external data lies outside its folder; the message names the path."""


_LOCATION_ENTRY = b"\x0a\x08location\x12"   # StringStringEntryProto {key: "location", value: ...}


def _varint(data, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at
    raise ValueError("truncated varint")


def external_data_locations(path: str) -> list[str]:
    """The ``location`` of every tensor of the ONNX file ``path`` whose data is stored outside it
    (subgraphs included), read without loading any of that data: parsed by the ``onnx`` package
    where it is installed, else found by scanning the file's bytes for the protobuf encoding of a
    ``location`` entry (which may also find one in metadata: refused the same way, never missed)."""
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors, uses_external_data
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception:  # noqa: BLE001 - not parseable here: the scan below, then ONNX Runtime, judge it
            model = None
        if model is not None:
            return [entry.value for tensor in _get_all_tensors(model) if uses_external_data(tensor)
                    for entry in tensor.external_data if entry.key == "location"]
    import mmap

    found = []
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return found
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = data.find(_LOCATION_ENTRY)
            while at >= 0:
                try:
                    size, start = _varint(data, at + len(_LOCATION_ENTRY))
                    found.append(data[start:start + size].decode("utf-8", "replace"))
                except ValueError:
                    pass
                at = data.find(_LOCATION_ENTRY, at + 1)
    return found


def check_external_data(path: str) -> None:
    """Refuse (:class:`UnsafeModelFile`) an ONNX file whose external data lies outside its
    folder: an absolute location, ``..`` components, or a symlink (of the file or of a folder
    on the way) resolving elsewhere. Checked before ONNX Runtime opens the file, which would
    read the data where the file points."""
    folder = os.path.dirname(os.path.abspath(path))
    real_folder = os.path.realpath(folder)
    for location in external_data_locations(path):
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or os.path.commonpath([real_folder, target]) != real_folder:
            raise UnsafeModelFile(f"{path}: refused: its external data {location!r} resolves to {target}, outside "
                                  f"the model's folder {real_folder} (external data must lie in that folder)")


def _session(path, options):
    """An ONNX Runtime CPU session of ``path``, after :func:`check_external_data`; errors name the file."""
    onnxruntime = require("onnxruntime", "running an ONNX model")
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    check_external_data(path)
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any parse failure is this file's problem
        raise ValueError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None


def _parse_metadata(path: str, session) -> OnnxMetadata:
    props = session.get_modelmeta().custom_metadata_map
    if "afnet.version" not in props:
        raise ValueError(f"{path}: no afnet metadata (an ONNX model written by `afnet export` records its "
                         f"frames, input size, normalisation, labels and frame selection)")
    if props["afnet.version"] != str(METADATA_VERSION):
        raise ValueError(f"{path}: afnet metadata version {props['afnet.version']}, this afnet reads "
                         f"{METADATA_VERSION}: export it again")
    fields = OnnxMetadata.__dataclass_fields__
    try:
        values = {k: json.loads(props[k]) for k in fields if k in props}
        return OnnxMetadata(**values)
    except (TypeError, json.JSONDecodeError) as exc:
        missing = [k for k, f in fields.items()
                   if k not in props and f.default is MISSING and f.default_factory is MISSING]
        problem = "missing " + ", ".join(missing) if missing else exc
        raise ValueError(f"{path}: bad afnet metadata ({problem})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- export
@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote: the file, its metadata, and, when checked, the largest
    relative difference of ONNX Runtime's logits from PyTorch's on a random video and whether
    the masks were identical."""

    path: str
    metadata: OnnxMetadata
    size_mb: float
    max_rel_diff: float | None = None
    masks_equal: bool | None = None


def export_execution(model: nn.Module, execution: str = "auto") -> str:
    """The execution an export of ``model`` (configured) runs: ``sparse`` or ``masked``.
    ``auto``: sparse where the number of frames kept per video is fixed (static-k, uniform),
    else masked. Raises ValueError naming the option when the requested one cannot be
    exported with static shapes."""
    if execution not in EXECUTIONS:
        raise OptionError(f"{{execution}} {execution!r}; accepted: {', '.join(EXECUTIONS)}", "execution")
    if not model.has_navigation:  # no focal branch: nothing differs; named as torch names it
        return model.resolved_execution(1) if execution == "auto" else execution
    if model.selection in _DRAWN:
        raise OptionError(f"selection {model.selection!r} draws its frames per call (a seeded generator in "
                          f"torch); a graph cannot reproduce it: export with {{ratio}} R (static-k) or a "
                          f"'uniform' policy", "ratio")
    fixed = model.fixed_counts().complete  # the count per video known before the mask: static shapes
    if execution == "auto":
        return "sparse" if fixed and not model.spatial else "masked"
    if execution == "sparse" and model.spatial:
        raise OptionError("{execution} sparse: region-sparse execution is not exported (the export of a "
                          "spatial model runs masked, its region masks among the outputs); export it with "
                          "{execution} masked", "execution")
    if execution == "sparse" and not fixed:
        raise OptionError(f"{{execution}} sparse needs a fixed number of frames per video (static shapes); the "
                          f"model selects by {model.selection!r} without a ratio: give {{ratio}} R (the learned "
                          f"navigation keeps exactly round(R*T) frames per video, those it ranks highest: "
                          f"static-k), or export {{execution}} masked (its keep/skip threshold)", "execution", "ratio")
    return execution


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's progress prints and its notes on torchvision (not installed, not needed)
    kept off the user's terminal; errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)    # torch-internal deprecations
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, model: str | None = None,
                frames: int | None = None, num_classes: int | None = None, labels: str | os.PathLike | None = None, *,
                preset: str | None = None, size: int | None = None, shift: bool | None = None,
                ratio: float | None = None, execution: str = "auto", opset: int | None = None,
                check: bool = True, device: str | torch.device = "cpu") -> ExportReport:
    """Export a checkpoint (ours or the authors') to ``out`` as an ONNX model with its metadata.

    Args:
        checkpoint, model, frames, num_classes, labels, preset, size, shift, ratio: as for
            :func:`load_model_for_inference`.
        out: the ``.onnx`` file to write (whole, or not at all).
        execution: ``sparse``, ``masked`` or ``auto`` (:func:`export_execution`).
        opset: ONNX opset (``None``: the exporter's default).
        check: run the exported graph in ONNX Runtime on a random video and compare it with
            PyTorch (:attr:`ExportReport.max_rel_diff`, :attr:`ExportReport.masks_equal`).
        device: where PyTorch's side of the check runs (``cpu``, ``cuda``, ``cuda:N``, ``auto``;
            :func:`afnet.runtime.resolve_device`); the export itself traces on the CPU.

    Returns:
        An :class:`ExportReport`. Raises FileNotFoundError / ValueError (a
        :class:`afnet.checkpoint.CheckpointError` for a checkpoint that does not fit the model,
        e.g. another frame count) naming the problem.
    """
    require("onnxscript", "exporting to ONNX")
    require("onnx", "exporting to ONNX")
    out = str(out)
    target = resolve_device(device)   # a GPU asked for where there is none: before any work
    im = load_model_for_inference(checkpoint, model, frames, num_classes, labels, preset=preset, size=size,
                                  shift=shift, ratio=ratio, channels_last=False)
    net = im.model
    chosen = export_execution(net, execution)
    if net.has_navigation:
        net.configure(execution=chosen)
    s = im.config.input_size
    video = torch.randn(2, net.num_frames, 3, s, s, generator=torch.Generator().manual_seed(0))
    names = output_names(im.points, net.spatial)
    graph = GraphOutputs(net).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    try:  # written whole, fsynced, then renamed: an interrupted export leaves no half file under ``out``
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(graph, (video,), tmp, input_names=["video"], output_names=names, opset_version=opset,
                              dynamo=True, external_data=False, dynamic_shapes={"video": {0: batch}}, verbose=False)
        write_metadata(tmp, _metadata(im, chosen, names, video, checkpoint))
        commit(tmp, out)
    except Exception as exc:
        error = disk_full(exc, out)
        if error is exc:
            raise
        raise error from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    report = ExportReport(out, read_onnx_metadata(out), os.path.getsize(out) / 2**20)
    if check:  # another video and batch than the traced example: an input taken for a constant would show
        other = torch.randn(1, net.num_frames, 3, s, s, generator=torch.Generator().manual_seed(1))
        report.max_rel_diff, report.masks_equal = compare_with_torch(out, net.to(target), other)
    return report


def _metadata(im: InferenceModel, execution: str, names: list[str], video: torch.Tensor, checkpoint) -> OnnxMetadata:
    net = im.model
    return OnnxMetadata(
        arch=im.arch, num_frames=net.num_frames, num_classes=net.num_classes, input_size=im.config.input_size,
        mean=list(im.config.mean), std=list(im.config.std), labels=im.class_names, selection=net.selection,
        ratio=net.ratio, execution=execution, points=im.points, spatial=bool(net.spatial),
        region_grid=list(net.region_grid) if net.spatial else None, shift=bool(net.shift),
        gflops_per_view=round(count_flops(net, video[:1]), 6), outputs=names,
        preprocessing=asdict(im.config), source=im.source, checkpoint=os.path.basename(str(checkpoint)),
        exported_with={"afnet": _version(), "torch": torch.__version__, "python": platform.python_version()})


def _version() -> str:
    from afnet import __version__

    return __version__


def compare_with_torch(path: str, model: nn.Module, video: torch.Tensor) -> tuple[float, bool]:
    """(largest relative difference of the ONNX Runtime logits from ``model``'s, masks and
    regions identical) on ``video``."""
    onnx_model = OnnxModel(path)
    with torch.no_grad():
        ref = model(video.to(next(model.parameters()).device))
    ref = type(ref)(ref.logits.cpu(), [m.cpu() for m in ref.masks], [r.cpu() for r in ref.regions])
    got = onnx_model(video)
    rel = float((got.logits - ref.logits).abs().max() / ref.logits.abs().max().clamp_min(1e-12))
    same = all(torch.equal(a.float(), b.float()) for a, b in zip(got.masks + got.regions, ref.masks + ref.regions))
    return rel, same and len(got.masks) == len(ref.masks) and len(got.regions) == len(ref.regions)


# ----------------------------------------------------------------------------- ONNX Runtime
class OnnxModel:
    """An exported model run by ONNX Runtime, called like a :class:`VideoModel` in eval:
    ``model(video (B, T, 3, S, S)) -> VideoOutput`` (logits, masks per navigation point,
    regions for spatial models), so the inference path (``run_model``, ``predict_sample``,
    ``explain_video``) runs it unchanged. ``threads``: ONNX Runtime's intra-op threads
    (default: its own choice)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        onnxruntime = require("onnxruntime", "running an ONNX model")
        self.path = str(path)
        options = onnxruntime.SessionOptions()
        # ONNX Runtime's threads spin after each run by default: they would take the cores from
        # the decoding (and any PyTorch work) that runs between two calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if check_threads(threads) is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _session(self.path, options)
        self.metadata = _parse_metadata(self.path, self.session)
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.output_names != self.metadata.outputs:
            raise ValueError(f"{self.path}: graph outputs {self.output_names} differ from its metadata's "
                             f"{self.metadata.outputs}")

    # the attributes of a VideoModel that the inference path reads
    @property
    def num_frames(self) -> int:
        return self.metadata.num_frames

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    @property
    def spatial(self) -> bool:
        return self.metadata.spatial

    @property
    def region_grid(self) -> list[int] | None:
        return self.metadata.region_grid

    @property
    def selection(self) -> str:
        return self.metadata.selection

    @property
    def ratio(self) -> float | None:
        return self.metadata.ratio

    def resolved_execution(self, batch: int = 1, device=None, given: bool = False) -> str:
        """What the graph runs: ``sparse`` or ``masked``, fixed at export."""
        return self.metadata.execution

    @property
    def gflops_per_view(self) -> float:
        """Recorded at export: the graph's shapes are static, so every call costs the same."""
        return self.metadata.gflops_per_view

    def __call__(self, video: torch.Tensor) -> VideoOutput:
        m = self.metadata
        if not isinstance(video, torch.Tensor) or video.dim() != 5:
            raise ValueError(f"expected a video tensor (B, T, 3, H, W), got "
                             f"{tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__}")
        if video.shape[1] != m.num_frames:
            raise ValueError(f"{self.path} was exported for {m.num_frames} frames per video (the navigation and "
                             f"temporal shift are sized by T), got a video with {video.shape[1]} frames")
        if tuple(video.shape[2:]) != (3, m.input_size, m.input_size):
            raise ValueError(f"{self.path} was exported for (3, {m.input_size}, {m.input_size}) frames, got "
                             f"{tuple(video.shape[2:])}")
        outputs = self.session.run(None, {"video": video.detach().float().contiguous().numpy()})
        named = dict(zip(self.output_names, (torch.from_numpy(o) for o in outputs)))
        masks = list(named["masks"].unbind(1)) if "masks" in named else []
        regions = [named[f"regions.{p}"] for p in m.points] if m.spatial else []
        return VideoOutput(named["logits"], masks, regions)


def load_onnx_for_inference(path: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                            threads: int | None = None) -> InferenceModel:
    """An :class:`InferenceModel` whose model is the exported graph in ONNX Runtime, with the
    class names, navigation points and evaluation config recorded at export; ``labels``
    overrides the class names (a class-name file, as for a checkpoint)."""
    runner = OnnxModel(path, threads=threads)
    m = runner.metadata
    names = resolve_class_names(m.labels, labels, m.num_classes)
    return InferenceModel(runner, m.arch, names, m.dataset_config(), list(m.points), str(path), "ONNX")


def describe(meta: OnnxMetadata) -> str:
    """One line: the architecture, frames, input, selection and execution of an export."""
    policy = meta.selection if meta.ratio is None else f"{meta.selection} at ratio {meta.ratio:g}"
    if meta.selection == "navigation":
        policy = "learned navigation, keep/skip threshold" if meta.ratio is None else \
            f"learned navigation, static-k (round({meta.ratio:g}*{meta.num_frames}) frames per video and point)"
    return (f"{meta.arch}: {meta.num_frames} frames, {meta.input_size}x{meta.input_size}, {meta.num_classes} classes, "
            f"{policy}, {meta.execution} execution, {meta.gflops_per_view:.3f} GFLOPs per view")
