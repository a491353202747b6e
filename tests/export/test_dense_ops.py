"""
The traceable forms of FCOS's and SipMask's post-processing against independent computations:
mmdetection's greedy CPU NMS and CropSplit written as plain loops, the sort-free per-image
limit, and torchvision's deformable convolution against its ONNX DeformConv in onnxruntime.
"""
import numpy as np
import pytest
import torch
from torchvision.ops import deform_conv2d

from cxr_d2.export import UnsupportedExport
from cxr_d2.export.dense import DEFORM_CONV_OPSET
from cxr_d2.modeling.fcos.inference import keep_top_scores

postprocess = pytest.importorskip("sipmask.postprocess")
ort = pytest.importorskip("onnxruntime")


def greedy_nms_reference(boxes, scores, threshold):
    """mmdetection 1.x's nms_cpu.cpp, line by line, in float32 numpy."""
    b, s = boxes.numpy().astype(np.float32), scores.numpy()
    x1, y1, x2, y2 = b.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-s, kind="stable")
    suppressed = np.zeros(len(b), bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        for j in order[pos + 1:]:
            if suppressed[j]:
                continue
            w = max(np.float32(0), min(x2[i], x2[j]) - max(x1[i], x1[j]) + 1)
            h = max(np.float32(0), min(y2[i], y2[j]) - max(y1[i], y1[j]) + 1)
            inter = w * h
            with np.errstate(invalid="ignore", divide="ignore"):
                if inter / (areas[i] + areas[j] - inter) >= np.float32(threshold):
                    suppressed[j] = True
    return np.flatnonzero(~suppressed)


def random_boxes(n, seed, size=60.0):
    """Boxes of which about a third are inverted (x2 < x1 or y2 < y1, as the official decoding
    gives for negative distances), many overlapping, a few identical."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * 30 - 8
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[n // 2] = boxes[0]
    return boxes, torch.rand(n, generator=g)


class _NMS(torch.nn.Module):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def forward(self, boxes, scores):
        return postprocess.nms_plus_one(boxes, scores, self.threshold)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_nms_plus_one_is_the_official_greedy_nms_in_torch_and_onnxruntime(tmp_path, threshold):
    path = str(tmp_path / "nms.onnx")
    boxes, scores = random_boxes(40, 0)
    torch.onnx.export(_NMS(threshold), (boxes, scores), path, dynamo=False, opset_version=17,
                      input_names=["boxes", "scores"],
                      dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}})  # fmt: skip
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for seed, n in ((1, 60), (2, 7), (3, 1)):
        boxes, scores = random_boxes(n, seed)
        want = greedy_nms_reference(boxes, scores, threshold)
        assert 0 < len(want) < n or n == 1
        assert postprocess.nms_plus_one(boxes, scores, threshold).tolist() == want.tolist()
        got = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})[0]
        assert got.tolist() == want.tolist()


def test_nms_plus_one_suppresses_at_exactly_the_threshold():
    # areas with the +1: 10 x 10 = 100 each; overlap 5 x 10 = 50 -> IoU 50 / 150 = 1/3
    boxes = torch.tensor([[0.0, 0, 9, 9], [5, 0, 14, 9]])
    scores = torch.tensor([0.9, 0.8])
    assert postprocess.nms_plus_one(boxes, scores, 1 / 3).tolist() == [0]
    assert postprocess.nms_plus_one(boxes, scores, 0.34).tolist() == [0, 1]


def crop_split_reference(basis, coefficients, boxes, grid):
    """The official CropSplit forward kernel, one pixel at a time (float32 box arithmetic)."""
    rows, cols = grid
    m, height, width = basis.shape
    out = torch.zeros(len(boxes), height, width)
    for p, (x1, y1, x2, y2) in enumerate(boxes.float().numpy()):
        rw = np.float32((np.float64(x2 - x1) + 0.1) / cols)
        rh = np.float32((np.float64(y2 - y1) + 0.1) / rows)
        for py in range(height):
            for px in range(width):
                if not (x1 <= px < x2 and y1 <= py < y2):
                    continue
                r = min(int((np.float32(py) - y1) / rh), rows - 1)
                c = min(int((np.float32(px) - x1) / rw), cols - 1)
                logit = float(torch.dot(coefficients[p, r * cols + c], basis[:, py, px]))
                out[p, py, px] = 1 / (1 + np.exp(-logit))
    return out


@pytest.mark.parametrize("grid", [(2, 2), (1, 3)])
def test_crop_split_matches_the_per_pixel_kernel(grid):
    g = torch.Generator().manual_seed(0)
    basis = torch.rand(5, 12, 14, generator=g)
    coefficients = torch.randn(4, grid[0] * grid[1], 5, generator=g)
    boxes = torch.tensor([[1.5, 2.0, 9.3, 11.0], [0.0, 0.0, 14.0, 12.0], [5.8, 3.7, 6.9, 4.1],
                          [-3.0, 5.0, 4.0, 20.0]])  # fmt: skip
    got = postprocess.crop_split(basis, coefficients, boxes, grid)
    want = crop_split_reference(basis, coefficients, boxes, grid)
    assert (got - want).abs().max() < 1e-6
    assert (got[2] > 0).sum() == 1  # a sub-pixel box covers the one integer pixel inside it
    assert postprocess.crop_split(basis, coefficients[:0], boxes[:0], grid).shape == (0, 12, 14)


@pytest.mark.parametrize("num", [0, 1, 19, 20, 21, 50])
def test_keep_top_scores_keeps_ties_at_the_last_score(num):
    """The 20 best and every one tied with the 20th (AdelaiDet's kthvalue rule)."""
    ranked = torch.linspace(1, 0.01, num)
    ranked[19:22] = ranked[19:20].clone()  # the 20th, 21st and 22nd best tie
    order = torch.randperm(num, generator=torch.Generator().manual_seed(num))
    scores = ranked[order]  # scores[i] has rank order[i]
    keep = keep_top_scores(scores, 20)
    want = torch.nonzero(order < min(num, 22) if num > 20 else order < num).squeeze(1)
    assert keep.tolist() == want.tolist()
    assert keep_top_scores(scores, 0).tolist() == list(range(num))


class _Deform(torch.nn.Module):
    def forward(self, x, offset, weight, bias):
        return deform_conv2d(x, offset, weight, bias, padding=(1, 1))


def test_deform_conv_exports_as_onnx_deform_conv_with_the_same_offsets(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1, 8, 7, 9, generator=g), torch.randn(6, 8, 3, 3, generator=g)
    offset, bias = torch.randn(1, 2 * 2 * 9, 7, 9, generator=g) * 2, torch.randn(6, generator=g)
    path = str(tmp_path / "dcn.onnx")
    args = (x, offset, weight, bias)
    torch.onnx.export(_Deform(), args, path, dynamo=False, opset_version=DEFORM_CONV_OPSET,
                      input_names=["x", "offset", "weight", "bias"])  # fmt: skip
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in zip(["x", "offset", "weight", "bias"], args)})
    assert np.abs(got[0] - _Deform()(*args).numpy()).max() < 1e-4
    with pytest.raises(UnsupportedExport, match="opset 19"):
        torch.onnx.export(_Deform(), args, str(tmp_path / "old.onnx"), dynamo=False,
                          opset_version=17)  # fmt: skip
