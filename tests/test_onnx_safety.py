"""Hostile model files, made here: ONNX files whose external data points outside their folder
(``..``, an absolute path, a symlink) are refused before ONNX Runtime opens them, naming the
external path; a checkpoint carrying a pickle payload is refused without running it."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from afnet.cli import main  # noqa: E402
from afnet.inference.onnx import (  # noqa: E402
    UnsafeModelFile,
    check_external_data,
    external_data_locations,
    read_onnx_metadata,
)


def _model_with_external_data(folder, location: str, name: str = "model.onnx") -> str:
    """``y = x + w`` with ``w`` (4 floats) stored at ``location`` relative to ``folder``, as an
    exporter writing external data would record it."""
    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


@pytest.fixture
def layout(tmp_path):
    """``models/`` (where the model files go) beside ``secret.bin``, the data they must not reach."""
    (tmp_path / "models").mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return tmp_path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlinked_folder"])
def test_external_data_outside_the_folder_is_refused(layout, kind):
    models = layout / "models"
    secret = str(layout / "secret.bin")
    if kind == "dotdot":
        location = "../secret.bin"
    elif kind == "absolute":
        location = secret
    elif kind == "symlink":
        os.symlink(secret, models / "weights.bin")
        location = "weights.bin"
    else:
        os.symlink(layout, models / "shared")
        location = "shared/secret.bin"
    path = _model_with_external_data(str(models), location)
    assert external_data_locations(path) == [location]
    with pytest.raises(UnsafeModelFile, match=rf"model.onnx: refused: its external data '{location}' resolves to "
                                              rf".*secret.bin, outside the model's folder"):
        check_external_data(path)
    with pytest.raises(UnsafeModelFile, match="outside the model's folder"):
        read_onnx_metadata(path)   # the ONNX Runtime session is never created


def test_external_data_inside_the_folder_opens(layout):
    models = layout / "models"
    (models / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = _model_with_external_data(str(models), "weights.bin")
    check_external_data(path)
    with pytest.raises(ValueError, match="no afnet metadata"):   # opened by ONNX Runtime: only not ours
        read_onnx_metadata(path)


def test_the_byte_scan_finds_locations_without_the_onnx_package(layout, monkeypatch):
    path = _model_with_external_data(str(layout / "models"), "../secret.bin")
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx fails
    assert external_data_locations(path) == ["../secret.bin"]
    with pytest.raises(UnsafeModelFile, match=r"'\.\./secret.bin'"):
        check_external_data(path)


def test_predict_refuses_the_hostile_file(layout, capsys):
    path = _model_with_external_data(str(layout / "models"), "../secret.bin")
    assert main(["predict", str(layout / "secret.bin"), "--onnx", path]) == 2
    err = capsys.readouterr().err
    assert "afnet predict: error:" in err and "'../secret.bin'" in err and "outside the model's folder" in err


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["AFNET_TEST_MARKER"],))


def test_a_checkpoint_with_a_pickle_payload_is_refused(tmp_path, monkeypatch):
    from afnet.checkpoint import read_checkpoint

    marker = tmp_path / "payload_ran"
    monkeypatch.setenv("AFNET_TEST_MARKER", str(marker))
    torch.save({"state_dict": {}, "extra": _Payload()}, tmp_path / "hostile.pt")
    with pytest.raises(Exception, match="hostile.pt"):
        read_checkpoint(tmp_path / "hostile.pt")
    assert not marker.exists()
