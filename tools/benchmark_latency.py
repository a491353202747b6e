#!/usr/bin/env python
"""
Inference latency of models given by their configs, on the same images, on this machine:

    python tools/benchmark_latency.py --config-file configs/Phantom/ssd512_VGG16.yaml \
        configs/Phantom/yolov3_608_DarkNet53.yaml configs/Phantom/retinanet_R_50_FPN.yaml
    python tools/benchmark_latency.py --config-file A.yaml B.yaml --weights a.pth b.pth \
        --device cpu --warmup 3 --iters 20 --json out.json --opts TEST.DETECTIONS_PER_IMAGE 100

Every model sees the same seeded phantom radiographs (or the first images of --dataset),
resized by its config's test resize (INPUT.MIN/MAX_SIZE_TEST), one image per forward pass in
eval mode without gradients. The time is one `model([input])` call (normalisation, network,
decoding, NMS, rescaling to the original size), excluding image reading and resizing. The
models are built first and then called in turn, one call each per round (interleaved, so a
change of the machine's load reaches all alike); the median over --iters rounds after
--warmup rounds is reported, with the machine it ran on, the ratio to the first config, and
the mean number of detections per image beside it (a model's time depends on how many
candidates reach its NMS and mask step: match the counts, e.g. with score thresholds of 0 and
the same TEST.DETECTIONS_PER_IMAGE). Without --weights the models get random weights drawn
with --seed (the same in every process), so their NMS sees more candidates than trained ones
would: pass trained checkpoints for figures to publish. Zero-initialised layers (SipMask's
feature-alignment offsets) stay zero in random weights; --perturb STD adds seeded N(0, STD)
noise to every parameter, so that they act as in a trained model. --torchvision-deform runs
deformable convolutions on torchvision's kernel also on the CPU (without it, CPU inference
takes cxr_d2's gather path: cxr_d2/layers/deform_conv_cpu.py). --amp fp16|bf16 runs every call
under torch.autocast of that dtype (mixed precision; the weights stay float32).

A SipMask-VIS config (MODEL.META_ARCHITECTURE SipMaskVIS) is also timed tracking: the images as
one sequence through `track_sequence`, per frame, interleaved with the same frames one by one
through the image path, and the ratio (tracking's cost) printed.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model

import cxr_d2  # noqa: F401 (registers the models and datasets)
from cxr_d2 import CXRError
from cxr_d2.config import add_cxr_config, resolve_num_classes
from cxr_d2.data import read_image
from cxr_d2.data.phantom import draw_phantom
from cxr_d2.engine import AtomicCheckpointer
from cxr_d2.engine.projects import project_config_fns
from cxr_d2.layers import deform_conv


def machine_name(device):
    """A one-line description of the device the timings come from."""
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(device)
        return f"{gpu} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__}"


def load_images(num, dataset=None, size=512, seed=0):
    """`num` HxWx3 uint8 BGR images: seeded phantoms of `size` px, or the dataset's first."""
    if dataset:
        if dataset not in DatasetCatalog.list():
            raise CXRError(f"--dataset '{dataset}' is not a registered dataset")
        records = DatasetCatalog.get(dataset)[:num]
        return [read_image(r["file_name"], "BGR") for r in records]  # PNG, JPEG or DICOM
    return [
        np.repeat(draw_phantom(np.random.default_rng(seed + i), size)[0][:, :, None], 3, axis=2)
        for i in range(num)
    ]


def build(config_file, weights, opts, device, seed=0, perturb=0.0):
    if not os.path.isfile(config_file):
        raise CXRError(f"--config-file {config_file} does not exist")
    cfg = get_cfg()
    add_cxr_config(cfg)
    for add_project_config in project_config_fns():
        add_project_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts) + ["MODEL.DEVICE", device])
    resolve_num_classes(cfg)  # the head widths, from the config's datasets' metadata
    torch.manual_seed(seed)  # the same random weights in every process
    model = build_model(cfg).eval()
    if weights:
        if not os.path.isfile(weights):
            raise CXRError(f"--weights {weights} does not exist")
        AtomicCheckpointer(model).load(weights)
    if perturb:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator).to(p) * perturb)
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    return cfg, model, resize


def to_inputs(images, resize, input_format):
    inputs = []
    for img in images:
        h, w = img.shape[:2]
        resized = resize.get_transform(img).apply_image(img)
        if input_format == "RGB":
            resized = resized[:, :, ::-1]
        inputs.append(
            {
                "image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                "height": h,
                "width": w,
            }
        )
    return inputs


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _timed(fn, device, amp=None):
    """(ms, fn()) with the device synchronised around it; `amp`: an autocast dtype or None."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.autocast(device.split(":")[0], dtype=amp, enabled=amp is not None):
        out = fn()
    sync()
    return (time.perf_counter() - start) * 1000, out


@torch.no_grad()
def time_models(models, inputs, warmup, iters, device, amp=None):
    """
    Call the models in turn, model k on `inputs[k]` (cycling over its images), for `warmup`
    then `iters` rounds. Returns per model: median and all per-call times (ms) and the mean
    number of detections per image.
    """
    times = [[] for _ in models]
    counts = [[] for _ in models]
    for r in range(warmup + iters):
        for k, model in enumerate(models):
            x = inputs[k][r % len(inputs[k])]
            ms, out = _timed(lambda: model([dict(x)]), device, amp)
            if r >= warmup:
                times[k].append(ms)
                counts[k].append(len(out[0]["instances"]))
    return [(statistics.median(t), t, float(np.mean(c))) for t, c in zip(times, counts)]


@torch.no_grad()
def time_tracking(model, inputs, warmup, iters, device, amp=None):
    """Per-frame median (ms) of the frames through the image path one by one and through
    `track_sequence` as one sequence, interleaved; their ratio is tracking's cost."""
    sequence = {"video_id": 0, "frames": [dict(x) for x in inputs]}
    single, tracked = [], []
    for k in range(warmup + iters):
        ms_single = sum(_timed(lambda x=x: model([dict(x)]), device, amp)[0] for x in inputs)
        ms_tracked = _timed(lambda: model.track_sequence(sequence), device, amp)[0]
        if k >= warmup:
            single.append(ms_single / len(inputs))
            tracked.append(ms_tracked / len(inputs))
    return statistics.median(single), statistics.median(tracked)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", nargs="+", required=True, metavar="FILE")
    parser.add_argument(
        "--weights", nargs="*", default=[], help="a checkpoint per config ('' for none)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=5, help="distinct input images")
    parser.add_argument("--dataset", default=None, help="take the images from this dataset")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights")
    parser.add_argument("--perturb", type=float, default=0.0,
                        help="add seeded N(0, STD) noise to every parameter")
    parser.add_argument("--torchvision-deform", action="store_true",
                        help="deformable convolutions on torchvision's kernel on the CPU too")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default=None,
                        help="time every call under torch.autocast of this dtype")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides for every model")
    args = parser.parse_args(argv)
    if args.weights and len(args.weights) != len(args.config_file):
        raise CXRError(
            f"--weights has {len(args.weights)} entries for {len(args.config_file)} configs; "
            "give one per config"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    deform_conv.CPU_GATHER = not args.torchvision_deform
    amp = AMP_DTYPES.get(args.amp)
    images = load_images(args.images, args.dataset)
    machine = machine_name(args.device)
    print(f"machine: {machine}" + (f", autocast {args.amp}" if args.amp else ", float32"))
    print(
        f"{len(images)} images, batch 1, the models called in turn: median of {args.iters} "
        f"rounds after {args.warmup} warm-up rounds\n"
    )
    built = []
    for k, config in enumerate(args.config_file):
        weights = args.weights[k] if args.weights else ""
        cfg, model, resize = build(config, weights, args.opts, args.device, args.seed,
                                   args.perturb)  # fmt: skip
        built.append((config, model, to_inputs(images, resize, cfg.INPUT.FORMAT)))
    timed = time_models([b[1] for b in built], [b[2] for b in built], args.warmup, args.iters,
                        args.device, amp)  # fmt: skip
    print("| config | input | params (M) | median latency (ms) | ratio to the first | "
          "detections/image |")
    print("|---|---|---|---|---|---|")
    rows = []
    for (config, model, inputs), (median, times, dets) in zip(built, timed):
        params = sum(p.numel() for p in model.parameters()) / 1e6
        size = "x".join(map(str, inputs[0]["image"].shape[1:]))
        ratio = median / timed[0][0]
        rows.append(
            {
                "config": config,
                "input": size,
                "params_m": params,
                "median_ms": median,
                "ratio_to_first": ratio,
                "times_ms": times,
                "detections_per_image": dets,
            }
        )
        print(f"| {config} | {size} | {params:.1f} | {median:.1f} | {ratio:.2f}x | {dets:.1f} |",
              flush=True)  # fmt: skip
        if hasattr(model, "track_sequence"):
            single, tracked = time_tracking(model, inputs, 1, max(3, args.iters // 4), args.device,
                                            amp)  # fmt: skip
            rows[-1].update(image_path_ms=single, tracking_ms=tracked)
            print(f"|   tracking {len(inputs)} frames as one sequence | | | {tracked:.1f} per "
                  f"frame vs {single:.1f} ({tracked / single:.2f}x) | | |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "device": args.device, "amp": args.amp, "rows": rows},
                      f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CXRError as e:
        sys.exit(f"error: {e}")
