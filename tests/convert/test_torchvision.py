"""torchvision ImageNet checkpoints, converted by tools/convert_weights.py and loaded through
MODEL.WEIGHTS with the pretrained-start configs, give torchvision's own features."""
import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from cxr_d2.convert.cli import main, run
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import base_config

TV_R50 = "configs/Pretrained/mask_rcnn_R_50_FPN_torchvision.yaml"
TV_X101 = "configs/Pretrained/mask_rcnn_X_101_32x8d_FPN_torchvision.yaml"
TV_VGG = "configs/Pretrained/ssd512_VGG16_torchvision.yaml"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's, in [0, 1] units


def randomise_norms(model, seed=0):
    """BatchNorm affine parameters and running statistics away from their identity defaults, so
    that a swapped or dropped statistic shows in the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def save_and_convert(tmp_path, source, state):
    src, out = tmp_path / "in.pth", tmp_path / "out.pth"
    torch.save(state, src)
    run(source, str(src), str(out))
    return str(out)


def load(config, weights, **over):
    cfg = base_config(config, **{"MODEL.WEIGHTS": weights, **over})
    model = build_model(cfg).eval()
    AtomicCheckpointer(model).load(weights)
    return model


def image(size=64, seed=0):
    """An RGB image (3, H, W) in [0, 255], as the mapper gives with INPUT.FORMAT RGB."""
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 255


def torchvision_input(img):
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return ((img / 255 - mean) / std)[None]


def torchvision_stages(net, x):
    """res2 ... res5 of a torchvision ResNet."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = {}
    for k in range(1, 5):
        x = getattr(net, f"layer{k}")(x)
        out[f"res{k + 1}"] = x
    return out


def assert_features_equal(ours, theirs, tol=1e-5):
    """Max abs difference within `tol` (features here are of magnitude 1 to 4)."""
    for name, ref in theirs.items():
        diff = (ours[name] - ref).abs().max().item()
        scale = max(1.0, ref.abs().max().item())
        print(f"{name}: max abs diff {diff:.2e}, max |feature| {scale:.2e}")
        assert diff <= tol, f"{name}: max abs diff {diff} (max |feature| {scale})"


@pytest.mark.parametrize(
    "arch, config",
    [("resnet50", TV_R50), pytest.param("resnext101_32x8d", TV_X101, marks=pytest.mark.slow)],
)
def test_torchvision_resnet_features(arch, config, tmp_path):
    torch.manual_seed(0)
    net = randomise_norms(getattr(torchvision.models, arch)(weights=None))
    weights = save_and_convert(tmp_path, "torchvision", net.state_dict())
    model = load(config, weights)
    img = image()
    x = model.preprocess_image([{"image": img}]).tensor
    ref_x = torchvision_input(img)
    assert (x - ref_x).abs().max() < 1e-5  # RGB, torchvision's mean and std
    with torch.no_grad():
        assert_features_equal(model.backbone.bottom_up(x), torchvision_stages(net, ref_x))


def test_readme_advice_without_stride_and_mean_gives_other_features(tmp_path):
    """The old advice (FrozenBN + FREEZE_AT 2 only) loads without error but the features differ:
    STRIDE_IN_1X1 and the mean/std are part of a torchvision start."""
    torch.manual_seed(0)
    net = randomise_norms(torchvision.models.resnet50(weights=None))
    weights = save_and_convert(tmp_path, "torchvision", net.state_dict())
    model = load(TV_R50, weights, **{"MODEL.RESNETS.STRIDE_IN_1X1": True})
    ref_x = torchvision_input(image())
    with torch.no_grad():
        ours, theirs = model.backbone.bottom_up(ref_x)["res5"], torchvision_stages(net, ref_x)["res5"]
    assert (ours - theirs).abs().max() > 1e-2


def vgg_stages(features, x):
    """The five stage outputs of a torchvision VGG (each before its max pool)."""
    out = []
    for layer in features:
        if isinstance(layer, torch.nn.MaxPool2d):
            out.append(x)
        x = layer(x)
    return out


@pytest.mark.parametrize(
    "arch, norm", [("vgg16", ""), pytest.param("vgg16_bn", "BN", marks=pytest.mark.slow)]
)
def test_torchvision_vgg16_stage_features(arch, norm, tmp_path):
    torch.manual_seed(0)
    net = randomise_norms(getattr(torchvision.models, arch)(weights=None))
    weights = save_and_convert(tmp_path, "torchvision", net.state_dict())
    model = load(TV_VGG, weights, **{"MODEL.VGG.NORM": norm})
    img = image()
    x = model.preprocess_image([{"image": img}]).tensor
    ref_x = torchvision_input(img)
    assert (x - ref_x).abs().max() < 1e-5
    backbone = model.backbone
    with torch.no_grad():
        theirs = vgg_stages(net.features, ref_x)
        y = ref_x
        for k, stage in enumerate(backbone.stages):
            if k > 0:
                y = torch.nn.functional.max_pool2d(y, 2, 2, ceil_mode=True)
            y = stage(y)
            diff = (y - theirs[k]).abs().max().item()
            print(f"stage {k + 1}: max abs diff {diff:.2e}, max {theirs[k].abs().max():.2e}")
            assert diff <= 1e-5, f"stage {k + 1}: max abs diff {diff}"
        fc6 = net.classifier[0].weight.view(4096, 512, 7, 7)
        assert torch.equal(backbone.fc6.weight, fc6[::4, :, ::3, ::3])
        assert torch.equal(backbone.fc7.weight[:, :, 0, 0], net.classifier[3].weight[::4, ::4])


def test_cli_reports_and_refuses_unmapped_keys(tmp_path, capsys):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["extra.weight"] = torch.zeros(1)
    src, out = tmp_path / "r18.pth", tmp_path / "out.pth"
    torch.save(state, src)
    with pytest.raises(SystemExit) as e:
        main(["--from", "torchvision", str(src), str(out)])
    assert "extra.weight" in str(e.value) and "--allow-unmapped" in str(e.value)
    assert not out.exists()
    assert main(["--from", "torchvision", str(src), str(out), "--allow-unmapped"]) == 0
    printed = capsys.readouterr().out
    assert "layer1.0.bn2.weight -> backbone.bottom_up.res2.0.conv2.norm.weight" in printed
    assert "fc.weight: ImageNet classifier" in printed and "not mapped 1 keys" in printed
    assert "extra.weight" not in torch.load(out, weights_only=True)["model"]


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04junk"])
def test_cli_bad_input_is_one_line(content, tmp_path):
    src = tmp_path / "bad.pth"
    src.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        main(["--from", "torchvision", str(src), str(tmp_path / "out.pth")])
    message = str(e.value)
    assert message.startswith(f"error: {src}") and "\n" not in message


def test_cli_wrong_checkpoint_is_one_line_naming_the_file(tmp_path):
    src = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), src)
    with pytest.raises(SystemExit) as e:
        main(["--from", "torchvision", str(src), str(tmp_path / "out.pth")])
    message = str(e.value)
    assert message.startswith(f"error: {src}: not a torchvision checkpoint") and "\n" not in message


@pytest.mark.parametrize("source", ["detectron2", "torchvision", "adelaidet", "sipmask", "torchxrayvision"])
@pytest.mark.parametrize(
    "checkpoint",
    [{1: torch.zeros(1)}, {"model": {2: torch.zeros(1)}}, {"state_dict": [torch.zeros(1)]}],
    ids=["int_keys", "int_keys_under_model", "state_dict_a_list"],
)
def test_cli_checkpoint_without_named_weights_is_one_line(source, checkpoint, tmp_path):
    src = tmp_path / "odd.pth"
    torch.save(checkpoint, src)
    with pytest.raises(SystemExit) as e:
        main(["--from", source, str(src), str(tmp_path / "out.pth")])
    message = str(e.value)
    assert message.startswith(f"error: {src}: not a checkpoint of named weights") and "\n" not in message
