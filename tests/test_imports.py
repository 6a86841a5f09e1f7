"""The front door: what importing afnet and running its CLI load, optional dependencies,
and side effects that must stay with the user (allocator, matplotlib backend, logging)."""
import json
import os
import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "lightning", "matplotlib", "av", "torchmetrics", "tensorboard")


def run_python(code: str, blocked=()) -> dict:
    """Run ``code`` in a fresh interpreter with the modules ``blocked`` made unimportable;
    the code leaves its result in ``result``, returned here (decoded from JSON)."""
    prelude = "import sys, json\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    epilogue = "\nprint(json.dumps(result))\n"
    out = subprocess.run([sys.executable, "-c", prelude + code + epilogue], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_afnet_loads_nothing_heavy():
    result = run_python("import afnet, afnet.data, afnet.engine, afnet.inference, afnet.models\n"
                        "import afnet.cli, afnet.data.cli, afnet.engine.cli, afnet.inference.cli\n"
                        "afnet.cli.build_parser()\n"
                        f"result = [m for m in {HEAVY!r} if m in sys.modules]")
    assert result == []


def test_option_constants_need_no_torch():
    """The CLI's choices and the option rules (afnet.models.options, the registry) load without
    torch; the configure options listed there are VideoModel.configure's."""
    result = run_python("from afnet.models import options, registry\n"
                        "p = registry.option_problems('af_resnet_small', {'selection': 'uniform'})\n"
                        "result = [p, list(registry.SPATIAL_MODELS), 'torch' in sys.modules]")
    assert result == [["selection='uniform' needs a ratio in (0, 1]"],
                      ["af_resnet50", "af_resnet101", "af_resnet_small"], False]
    import inspect

    from afnet.models.base import VideoModel
    from afnet.models.options import CONFIGURE_OPTIONS

    assert CONFIGURE_OPTIONS == tuple(inspect.signature(VideoModel.configure).parameters)[1:]


def test_lazy_names_resolve():
    result = run_python("import afnet\n"
                        "m = afnet.create_model('af_resnet_small', num_classes=3, num_frames=2)\n"
                        "result = [type(m).__name__, 'create_model' in dir(afnet), hasattr(afnet.data, 'load_video'),\n"
                        "          afnet.models.list_models() == sorted(afnet.list_models()),\n"
                        "          'lightning' in sys.modules, 'matplotlib' in sys.modules]")
    assert result == ["AFResNet", True, True, True, False, False]
    import afnet

    with pytest.raises(AttributeError, match="module 'afnet' has no attribute 'nope'"):
        afnet.nope  # noqa: B018


def test_core_needs_only_torch():
    """create_model, count_flops, load/save_checkpoint without av, Lightning, matplotlib, tqdm."""
    result = run_python(
        "import tempfile, os, torch, afnet\n"
        "m = afnet.create_model('af_resnet_small', num_classes=3, num_frames=2).eval()\n"
        "g = afnet.count_flops(m, torch.zeros(1, 2, 3, 32, 32))\n"
        "p = os.path.join(tempfile.mkdtemp(), 'm.pt'); afnet.save_checkpoint(p, m)\n"
        "afnet.load_checkpoint(afnet.create_model('af_resnet_small', num_classes=3, num_frames=2), p)\n"
        "result = g > 0",
        blocked=("av", "lightning", "matplotlib", "torchmetrics", "tensorboard", "tqdm"))
    assert result is True


@pytest.mark.parametrize("module, blocked, extra", [
    ("afnet.data.decoding", "av", "video"),
    ("afnet.data.synthetic", "av", "video"),
    ("afnet.engine.run", "lightning", "train"),
    ("afnet.engine.schema", "omegaconf", "train"),
    ("afnet.engine.metrics", "torchmetrics", "train"),
])
def test_missing_extra_is_named(module, blocked, extra):
    result = run_python(f"try:\n    import {module}\n    result = 'imported'\n"
                        "except ImportError as exc:\n    result = str(exc)", blocked=(blocked,))
    assert f"needs {blocked}, which is not installed: pip install 'afnet[{extra}]'" in result


def test_missing_matplotlib_is_named():
    result = run_python("from afnet.engine.plot import plot_kept_ratio\n"
                        "try:\n    plot_kept_ratio([0.5, 0.4], 'x.png')\n    result = 'drawn'\n"
                        "except ImportError as exc:\n    result = str(exc)", blocked=("matplotlib",))
    assert "pip install 'afnet[viz]'" in result


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path):
    result = run_python(
        "import matplotlib\nmatplotlib.use('svg')\n"
        "from afnet.engine.plot import plot_kept_ratio\n"
        f"plot_kept_ratio([0.9, 0.7, 0.5, 0.4], {str(tmp_path / 'k.png')!r})\n"
        "result = [matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules]")
    assert result == ["svg", False]
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_prepare_for_inference_leaves_malloc_alone_by_default():
    result = run_python(
        "import afnet, afnet.runtime as rt\n"
        "m = afnet.create_model('af_resnet_small', num_classes=3, num_frames=2)\n"
        "rt.prepare_for_inference(m)\nbefore = rt._malloc_tuned\n"
        "rt.prepare_for_inference(m, tune_malloc=True)\n"
        "result = [before, rt._malloc_tuned == sys.platform.startswith('linux')]")
    assert result == [False, True]


def test_run_demo_leaves_logging_alone(tmp_path):
    """The library's demo sets no level of the loggers a user configures (the root's,
    Lightning's, afnet's: the ``afnet demo`` command quiets Lightning, the function leaves that
    to its caller): run up to its first training, with those ``Logger.setLevel`` calls
    recorded (libraries imported on the way set their own loggers' levels)."""
    result = run_python(
        "import logging, lightning.pytorch, afnet.demo, afnet.engine\n"   # Lightning sets its own at import
        "calls = []\n"
        "real = logging.Logger.setLevel\n"
        "ours = ('root', 'lightning', 'pytorch_lightning', 'afnet')\n"
        "def set_level(self, level):\n"
        "    if self.name.split('.')[0] in ours: calls.append(self.name)\n"
        "    real(self, level)\n"
        "logging.Logger.setLevel = set_level\n"
        "class Trained(Exception): pass\n"
        "def train(*args, **kwargs): raise Trained\n"
        "afnet.engine.train = train\n"
        "try:\n"
        f"    afnet.demo.run_demo({str(tmp_path)!r}, quick=True, progress=lambda line: None)\n"
        "except Trained:\n"
        "    calls.append('trained')\n"
        "result = calls")
    assert result == ["trained"]


def _afnet(*argv):
    exe = os.path.join(os.path.dirname(sys.executable), "afnet")
    start = time.perf_counter()
    out = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
    return out, time.perf_counter() - start


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "afnet")),
                    reason="the afnet script is not installed beside this interpreter")
def test_cli_answers_at_once(tmp_path):
    """Bars (issue 10): --help <= 1 s, an argument or path error <= 4 s. Measured with
    slack here (the machine may be busy); the module test above is the strict guard."""
    out, seconds = _afnet("--help")
    assert out.returncode == 0 and "predict" in out.stdout
    assert seconds < 3
    out, seconds = _afnet("predict", str(tmp_path / "x.mp4"), "--checkpoint", str(tmp_path / "missing.ckpt"))
    assert out.returncode == 2 and "checkpoint not found" in out.stderr
    assert seconds < 8
