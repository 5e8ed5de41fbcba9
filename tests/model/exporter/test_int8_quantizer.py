"""Static INT8 quantisation of a small conv net exported through the project's exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from bench.loadtest.photo_set import build_photo_set
from model.exporter.calibration_reader import CalibrationBatches
from model.exporter.int8_quantizer import (
    QuantizationError,
    compute_layer_count,
    float_prefix,
    named_nodes,
    prefix_candidates,
    quantize_int8,
    quantize_with_search,
    shape_nodes,
)
from tests.model.exporter.small_conv_embedder import export_small_conv


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_small_conv(tmp_path_factory.mktemp("small-conv"))


@pytest.fixture(scope="module")
def calibration(fp32_path: Path) -> np.ndarray:
    spec = OnnxEmbedder(fp32_path, allow_gpu=False).spec
    return stack_batch(
        [preprocess_bytes(b, spec) for b in build_photo_set(views_per_photo=3, seed=5).all_views()]
    )


@pytest.fixture(scope="module")
def held_out(fp32_path: Path) -> np.ndarray:
    """Other views (another seed) than the calibration's: what the model meets in service."""
    spec = OnnxEmbedder(fp32_path, allow_gpu=False).spec
    return stack_batch(
        [preprocess_bytes(b, spec) for b in build_photo_set(views_per_photo=2, seed=9).all_views()]
    )


@pytest.fixture(scope="module")
def int8_path(
    fp32_path: Path, calibration: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("int8") / "int8.onnx"
    quantize_int8(fp32_path, path, CalibrationBatches("images", calibration))
    return path


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.array(
        [x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b, strict=True)]
    )


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def test_shape_nodes_are_those_computed_from_shapes_and_constants_only() -> None:
    # x ─ Shape ─ Gather ─ Cast ─ Div(c) ─ Ceil ─ Cast ┐
    # x ──────────────────────────────────────────── Pad ─ Relu ─ Mul(scale)
    floats = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Constant", [], ["i"], name="index", value_int=2),
        helper.make_node("Gather", ["s", "i"], ["h"], name="gather"),
        helper.make_node("Cast", ["h"], ["hf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Div", ["hf", "two"], ["half"], name="div"),
        helper.make_node("Ceil", ["half"], ["up"], name="ceil"),
        helper.make_node("Cast", ["up"], ["pads1"], name="cast_back", to=TensorProto.INT64),
        helper.make_node("Expand", ["pads1", "eight"], ["pads"], name="expand"),
        helper.make_node("Pad", ["x", "pads"], ["padded"], name="pad"),
        helper.make_node("Relu", ["padded"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "scale"], ["y"], name="mul"),
    ]
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array([8], np.int64), "eight"),
        numpy_helper.from_array(np.array(3.0, np.float32), "scale"),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [floats], [out], initializer=inits)
    assert shape_nodes(graph) == ["shape", "gather", "cast", "div", "ceil", "cast_back", "expand"]


def test_the_exported_nets_pad_arithmetic_is_found_and_its_data_path_is_not(
    fp32_path: Path,
) -> None:
    graph = named_nodes(onnx.load(str(fp32_path))).graph
    found = set(shape_nodes(graph))
    by_name = {n.name: n for n in graph.node}
    assert any(by_name[n].op_type == "Shape" for n in found)
    # The stem's run-time padding is computed there (timm's TF-"same" conv at stride 2)...
    assert {by_name[n].op_type for n in found} >= {"Shape", "Gather", "Div", "Ceil", "Sub"}
    # ...and the nodes that carry pixels are not (the stem's own Clips are max(0, pad) there).
    pixel_path = ["/Div", "/Sub", "/Div_1", "/stem/Pad", "/stem/Conv", "/act/Clip", "/head/MatMul"]
    assert all(name in by_name for name in pixel_path)
    assert not found & set(pixel_path)
    assert compute_layer_count(graph) == 4  # stem, depthwise, pointwise, head


def test_float_prefix_ends_after_the_kth_compute_layer_and_its_activation(fp32_path: Path) -> None:
    graph = named_nodes(onnx.load(str(fp32_path))).graph
    assert float_prefix(graph, 0) == []
    one = float_prefix(graph, 1)
    assert one[-2:] == ["/stem/Conv", "/act/Clip"]
    assert "/dw/Conv" not in one and "/stem/Pad" in one
    assert float_prefix(graph, 2)[-2:] == ["/dw/Conv", "/act_1/Clip"]


@pytest.mark.parametrize(
    ("layers", "expected"),
    [(1, [0]), (2, [0, 1]), (4, [0, 1, 2]), (49, [0, 1, 2, 4, 8, 16, 24]), (16, [0, 1, 2, 4, 8])],
)
def test_prefix_candidates_double_up_to_half_the_layers(layers: int, expected: list[int]) -> None:
    assert prefix_candidates(layers) == expected


def test_quantised_model_is_int8_qdq_and_agrees_with_fp32_on_unseen_photos(
    fp32_path: Path, int8_path: Path, held_out: np.ndarray
) -> None:
    model = onnx.load(str(int8_path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    made = producers(model)
    inits = {i.name: i for i in model.graph.initializer}
    for conv in (n for n in model.graph.node if n.op_type in ("Conv", "MatMul")):
        weight_dq = made[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear", conv.name
        assert inits[weight_dq.input[0]].data_type == TensorProto.INT8, conv.name
    # Shape arithmetic is left in float: no QuantizeLinear reads a tensor derived from a shape.
    fp32_graph = named_nodes(onnx.load(str(fp32_path))).graph
    shape_outputs = {
        o for n in fp32_graph.node if n.name in set(shape_nodes(fp32_graph)) for o in n.output
    }
    quantized_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert shape_outputs and not shape_outputs & quantized_inputs
    # Nothing dangling, so ONNX Runtime loads it without a warning per leftover constant.
    read = {name for n in model.graph.node for name in n.input}
    assert all(i.name in read for i in model.graph.initializer)
    assert all(o in read for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    # The contract travels with it.
    embedder = OnnxEmbedder(int8_path, allow_gpu=False)
    assert embedder.spec == OnnxEmbedder(fp32_path, allow_gpu=False).spec

    reference = OnnxEmbedder(fp32_path, allow_gpu=False).embed(held_out)
    got = cosines(reference, embedder.embed(held_out))
    assert got.mean() >= 0.995 and got.min() >= 0.98, (got.mean(), got.min())
    assert not np.allclose(reference, embedder.embed(held_out), atol=1e-4), "nothing quantised?"


def test_a_float_prefix_keeps_its_layers_float(
    fp32_path: Path, calibration: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "prefix.onnx"
    quantize_int8(fp32_path, path, CalibrationBatches("images", calibration), fp32_layers=1)
    model = onnx.load(str(path))
    made = producers(model)
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    floats = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    assert convs["/stem/Conv"].input[1] in floats
    assert made[convs["/stem/Conv"].input[0]].op_type == "Pad"  # float pixels, no QDQ between
    assert made[convs["/dw/Conv"].input[1]].op_type == "DequantizeLinear"
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_search_stops_at_the_first_prefix_that_meets_the_bars(
    fp32_path: Path, calibration: np.ndarray, tmp_path: Path
) -> None:
    chosen = quantize_with_search(
        fp32_path, calibration, tmp_path, min_mean_cosine=0.995, min_cosine=0.98
    )
    assert chosen.fp32_layers == 0 and chosen.compute_layers == 4
    assert [k for k, _ in chosen.attempts] == [0]
    assert chosen.calibration.num_photos == calibration.shape[0]
    assert chosen.calibration.mean_cosine >= 0.995 and chosen.path.is_file()


def test_search_that_no_prefix_satisfies_says_what_each_reached(
    fp32_path: Path, calibration: np.ndarray, tmp_path: Path
) -> None:
    # A bar above 1 cannot be met, so every candidate (0, 1, 2 of 4 layers) is tried.
    with pytest.raises(QuantizationError) as excinfo:
        quantize_with_search(fp32_path, calibration, tmp_path, min_mean_cosine=1.5, min_cosine=0)
    message = str(excinfo.value)
    assert "at most 2 of 4 layers in float32" in message
    for k in (0, 1, 2):
        assert f"{k} float32 layers: cosine on {calibration.shape[0]} photos: mean = " in message


def test_a_given_prefix_is_used_whatever_it_reaches(
    fp32_path: Path, calibration: np.ndarray, tmp_path: Path
) -> None:
    chosen = quantize_with_search(
        fp32_path, calibration, tmp_path, min_mean_cosine=1.5, min_cosine=0, fp32_layers=2
    )
    assert chosen.fp32_layers == 2 and [k for k, _ in chosen.attempts] == [2]
    model = onnx.load(str(chosen.path))
    floats = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert {convs["/stem/Conv"].input[1], convs["/dw/Conv"].input[1]} <= floats
    assert convs["/pw/Conv"].input[1] not in floats
