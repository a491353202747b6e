"""Darknet's darknet53.conv.74 format and torchxrayvision's one-channel ResNet-50, converted and
loaded through MODEL.WEIGHTS, give the source model's features."""
import numpy as np
import pytest
import torch
import torchvision
from detectron2.layers import Conv2d
from detectron2.modeling import build_backbone

from cxr_d2 import CXRError
from cxr_d2.convert.cli import main, run

from tests.convert.test_torchvision import load, randomise_norms, torchvision_stages
from tests.helpers import base_config

DARKNET = "configs/Pretrained/yolov3_608_DarkNet53_darknet.yaml"
XRV = "configs/Pretrained/mask_rcnn_R_50_FPN_xrv.yaml"
# darknet53.cfg's first 74 layers: every [convolutional] as (filters, size, stride), in order.
_STAGE = [(64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)]
DARKNET53_CFG = [(32, 3, 1)] + [
    conv for ch, n in _STAGE for conv in [(ch, 3, 2)] + [(ch // 2, 1, 1), (ch, 3, 1)] * n
]


def write_darknet(path, convs, version=(0, 2, 0), extra=0):
    """Darknet's save_weights: header, then per conv beta, gamma, mean, var, weights."""
    with open(path, "wb") as f:
        np.array(version, np.int32).tofile(f)
        seen = np.array([32013312], np.int64 if version[0] * 10 + version[1] >= 2 else np.int32)
        seen.tofile(f)
        for c in convs:
            n = c.norm
            for t in (n.bias, n.weight, n.running_mean, n.running_var, c.weight):
                t.detach().numpy().astype(np.float32).tofile(f)
        np.zeros(extra, np.float32).tofile(f)


def darknet_reference():
    torch.manual_seed(0)
    cfg = base_config(DARKNET)
    net = randomise_norms(build_backbone(cfg))
    convs = [m for m in net.modules() if isinstance(m, Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == DARKNET53_CFG
    return net, convs


@pytest.mark.parametrize(  # int64 and (before 0.2) int32 `seen`
    "version", [(0, 2, 0), pytest.param((0, 1, 0), marks=pytest.mark.slow)]
)
def test_darknet53_conv74_round_trip(version, tmp_path):
    net, convs = darknet_reference()
    src, out = tmp_path / "darknet53.conv.74", tmp_path / "darknet53.pth"
    write_darknet(src, convs, version)
    conversion = run("darknet", str(src), str(out))
    assert len(conversion.mapped) == 52 * 5 and not conversion.unmapped
    model = load(DARKNET, str(out))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model.backbone(x), net(x)
    for name in ("dark3", "dark4", "dark5"):
        assert torch.equal(ours[name], theirs[name]), name


def test_darknet_extra_floats_and_short_files(tmp_path):
    _, convs = darknet_reference()
    src = tmp_path / "yolov3.weights"
    write_darknet(src, convs, extra=10)
    with pytest.raises(SystemExit, match=r"float32\[\d+:\d+\] \(layers after"):
        main(["--from", "darknet", str(src), str(tmp_path / "out.pth")])
    src.write_bytes(src.read_bytes()[:100000])
    with pytest.raises(CXRError, match="ends inside conv"):
        run("darknet", str(src), str(tmp_path / "out.pth"))


def xrv_resnet50():
    """torchxrayvision's ResNet(weights="resnet50-res512-all") layout, without downloading: a
    torchvision ResNet-50 with a one-channel conv1 and 18 outputs, under `model.`."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None, num_classes=18)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    randomise_norms(net)
    state = {"model." + k: v for k, v in net.state_dict().items()}
    state["op_threshs"] = torch.rand(18)
    return net, state


def test_torchxrayvision_resnet50_folded_input_conv(tmp_path):
    net, state = xrv_resnet50()
    src, out = tmp_path / "xrv.pth", tmp_path / "R-50-xrv.pth"
    torch.save(state, src)
    conversion = run("torchxrayvision", str(src), str(out))
    assert ("op_threshs", "torchxrayvision's pathology thresholds (not a weight)") in conversion.dropped
    model = load(XRV, str(out))
    gray = torch.rand(64, 64, generator=torch.Generator().manual_seed(2)) * 255
    x = model.preprocess_image([{"image": gray.expand(3, -1, -1)}]).tensor
    xrv_x = (gray * 2048 / 255 - 1024)[None, None]  # torchxrayvision's normalize(img, 255)
    assert (x - xrv_x).abs().max() < 1e-3  # of 1024
    with torch.no_grad():
        ours, theirs = model.backbone.bottom_up(x), torchvision_stages(net, xrv_x)
    for name, ref in theirs.items():
        rel = ((ours[name] - ref).abs().max() / ref.abs().max()).item()
        print(f"{name}: max abs diff / max |feature| = {rel:.2e}")
        assert rel < 1e-5, name


def test_torchxrayvision_refuses_a_three_channel_conv1(tmp_path):
    state = {"model." + k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}
    src = tmp_path / "x.pth"
    torch.save(state, src)
    with pytest.raises(CXRError, match="conv1 takes 1 channel; this one 3"):
        run("torchxrayvision", str(src), str(tmp_path / "out.pth"))
