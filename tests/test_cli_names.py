"""One naming across commands (--labels FILE, --num-classes N; --classes warns) and "did you mean"
for a mistyped subcommand, model, preset or dataset."""
import json

import pytest

import afnet
from afnet.cli import main
from afnet.data.presets import get_preset
from afnet.errors import did_you_mean


def test_did_you_mean():
    assert did_you_mean("af_resnt50", ["af_resnet50", "tsm_resnet50"]) == " (did you mean 'af_resnet50'?)"
    assert did_you_mean("zzz", ["af_resnet50"]) == ""


def test_mistyped_names_get_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["perdict", "v.mp4"])
    assert exc.value.code == 2 and "invalid choice: 'perdict' (did you mean 'predict'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["flops", "af_resnt50"])
    assert "(did you mean 'af_resnet50'?); choose from 'af_mobilenetv3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "jestr", "--src", ".", "--out", "x"])
    assert "'jestr' (did you mean 'jester'?)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown model \(did you mean 'af_resnet_small'\?\)"):
        afnet.create_model("af_resnet_smal", num_classes=3, num_frames=4)
    with pytest.raises(ValueError, match=r"'jestr' \(did you mean 'jester'\?\)"):
        get_preset("jestr")


def test_num_classes_everywhere_and_classes_deprecated(capsys):
    args = ["flops", "tsn_resnet_small", "--frames", "2", "--size", "32", "--json"]
    assert main([*args, "--num-classes", "7"]) == 0
    new = capsys.readouterr()
    assert main([*args, "--classes", "7"]) == 0
    old = capsys.readouterr()
    assert json.loads(old.out) == json.loads(new.out) and json.loads(new.out)["classes"] == 7
    assert "afnet flops: warning: --classes is deprecated; use --num-classes" in old.err and "warning" not in new.err
