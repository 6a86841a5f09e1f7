"""Inference preparation keeps the logits; the command line prints numbers and one-line errors."""
import json

import pytest
import torch

import afnet
from afnet.cli import main
from afnet.models.layers import TemporalShift
from afnet.runtime import fold_batchnorm, prepare_for_inference
from tests.helpers import randomize


@pytest.mark.parametrize("name", ["af_resnet_small", "af_mobilenetv3", "tsm_resnet_small"])
def test_prepared_model_matches_eager(name):
    model = randomize(afnet.create_model(name, num_classes=5, num_frames=8, shift=True)).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        ref = model(video)
        prepare_for_inference(model)
        out = model(video)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(ref.masks, out.masks))
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_stays_close():
    model = randomize(afnet.create_model("af_resnet_small", num_classes=5, num_frames=8)).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        ref = model(video)
        out = prepare_for_inference(model, bf16=True)(video)
    assert out.logits.dtype == torch.float32
    torch.testing.assert_close(out.logits, ref.logits, rtol=0.05, atol=0.05)


def test_fold_needs_eval_mode():
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(afnet.create_model("af_resnet_small", num_classes=5, num_frames=4).train())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_shift_of_gathered_frames_equals_gathered_shift(memory_format):
    shift = TemporalShift(num_frames=4)
    x = torch.randn(8, 16, 5, 5).contiguous(memory_format=memory_format)
    index = torch.tensor([0, 3, 4, 6])
    torch.testing.assert_close(shift.gather(x, index), shift(x)[index], rtol=0, atol=0)
    full = shift(x).view(2, 4, 16, 5, 5)
    assert (full[:, -1, :2] == 0).all() and (full[:, 0, 2:4] == 0).all()
    torch.testing.assert_close(full[:, 0, :2], x.view(2, 4, 16, 5, 5)[:, 1, :2])


def test_cli_flops_json(capsys):
    assert main(["flops", "af_resnet50", "--frames", "12", "--shift", "--selection", "uniform", "--ratio", "0.4",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gflops_per_video"] == pytest.approx(27.3, rel=0.005)
    assert result["params"] == afnet.count_params(afnet.create_model("af_resnet50", num_classes=174, num_frames=12))


def test_cli_flops_text(capsys):
    assert main(["flops", "tsn_resnet50", "--frames", "8"]) == 0
    assert "32.700 GFLOPs per video" in capsys.readouterr().out


def test_cli_bad_ratio_is_one_line(capsys):
    assert main(["flops", "af_resnet_small", "--ratio", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "afnet flops: error: ratio must be in (0, 1], got 1.5"


def test_cli_unknown_model(capsys):
    with pytest.raises(SystemExit):
        main(["flops", "resnet9000"])
    assert "af_resnet50" in capsys.readouterr().err


def test_cli_zoo_json(capsys):
    assert main(["zoo", "--models", "af_mobilenetv3", "tsm_mobilenetv3", "--size", "64", "--rounds", "1",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["af_mobilenetv3", "tsm_mobilenetv3"]
    af = rows[0]
    assert af["gflops_sparse"] < af["gflops_masked"] and af["ms_sparse"] > 0 and af["params_m"] > 4


@pytest.mark.parametrize("flags, native", [({"avx2", "avx512f"}, False), ({"avx2", "avx512_bf16"}, True),
                                           ({"amx_bf16", "amx_tile"}, True), (set(), False)])
def test_bf16_auto_only_where_the_cpu_computes_it(monkeypatch, flags, native):
    """bf16='auto' autocasts only on a CPU with AVX-512 BF16 or AMX (on an AVX2 CPU bf16 is
    emulated, 7x slower); forcing it there warns, naming the CPU; False never autocasts."""
    import afnet.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    assert runtime.native_bf16("cpu") is native
    model = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8)
    assert prepare_for_inference(model, bf16="auto").autocast_dtype == (torch.bfloat16 if native else None)
    assert prepare_for_inference(model, bf16=False).autocast_dtype is None
    if native:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert prepare_for_inference(model, bf16=True).autocast_dtype == torch.bfloat16
    else:
        with pytest.warns(RuntimeWarning, match="no native bf16.*flags .*7x measured on an AVX2 CPU"):
            assert prepare_for_inference(model, bf16=True).autocast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="bf16 must be True, False or 'auto', got 'yes'"):
        prepare_for_inference(model, bf16="yes")


def test_cpu_description_names_the_speed_flags(monkeypatch):
    import afnet.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "sse4_2", "avx512_bf16"}))
    assert runtime.cpu_description().endswith("flags avx2 avx512_bf16")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset())
    assert runtime.cpu_description().endswith("flags none of avx2/avx512f/avx512_bf16/amx_bf16/amx_tile")
