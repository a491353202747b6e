#!/usr/bin/env python
"""
DICOM pixels to 8 bits: the float path (rescale, window, clip, round on every pixel) against
the lookup-table path `read_dicom` takes, on the same seeded image, interleaved, medians after
a warm-up; both outputs are checked equal first. Then a whole read of the file (BGR, as the
mapper reads it) decoded against the same image from the decoded-image cache (a hit).

    python tools/benchmark_dicom.py [--size 2500 2048] [--bits 12] [--repeats 15]

Prints one line per case (milliseconds and the ratio) and the machine's load average.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import pydicom

from cxr_d2.data import dicom
from cxr_d2.data.image_cache import ImageCache
from cxr_d2.data.image_io import unit_to_uint8
from cxr_d2.data.phantom import draw_phantom
from cxr_d2.data.phantom.dicom_writer import write_dicom

CASES = {
    "no window (min-max)": {},
    "rescale + window": dict(RescaleSlope="0.5", RescaleIntercept="-1024", WindowCenter="300",
                             WindowWidth="1500"),
    "window, MONOCHROME1": dict(WindowCenter="2048", WindowWidth="4096",
                                PhotometricInterpretation="MONOCHROME1"),
}


def _file(folder, name, size, bits, attrs):
    rng = np.random.default_rng(0)
    film, _ = draw_phantom(rng, 512)  # a radiograph-like image, so compression is realistic
    film = cv2.resize(film.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 2 ** (bits - 10), size=size)
    stored = np.clip(film * (2**bits - 1) / 255 + noise, 0, 2**bits - 1).astype(np.uint16)
    path = os.path.join(folder, name)
    write_dicom(path, np.zeros(size, np.uint8), bits_stored=16)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelData = stored.tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _median_ms(fn, repeats, warmup=2):
    times = []
    for k in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _cache_case(folder, path, repeats):
    cache = ImageCache(os.path.join(folder, "cache"))
    if not np.array_equal(cache.read(path, "BGR"), dicom.read_image(path, "BGR")):
        sys.exit("error: the cached image differs from the decoded one")
    times = {"decode": [], "cache": []}
    for _ in range(repeats):
        times["decode"].append(_median_ms(lambda: dicom.read_image(path, "BGR"), 1, warmup=0))
        times["cache"].append(_median_ms(lambda: cache.read(path, "BGR"), 1, warmup=0))
    d, c = (statistics.median(times[k][2:]) for k in ("decode", "cache"))
    print(f"{'read_image (BGR)':22s} decode {d:6.1f} ms   cache hit {c:6.1f} ms   {d / c:4.1f}x   "
          f"({1000 / d:.0f} vs {1000 / c:.0f} images/s)")


DECODERS = {  # transfer syntax -> pydicom decoding plugins to compare
    "JPEG2000Lossless": ("imagecodecs", "pillow", "pylibjpeg"),
    "JPEGLSLossless": ("pyjpegls", "pylibjpeg"),
    "JPEGExtended12Bit": ("imagecodecs", "pylibjpeg"),  # lossy: plugins within 1 level
}


def _compress(ds, syntax):
    """Compress in place; 12-bit JPEG (which pydicom cannot encode) through imagecodecs."""
    import pydicom.uid

    if syntax != "JPEGExtended12Bit":
        ds.compress(getattr(pydicom.uid, syntax))
        return
    import imagecodecs
    from pydicom.encaps import encapsulate

    frame = imagecodecs.jpeg8_encode(ds.pixel_array, level=95, bitspersample=12)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGExtended12Bit


def _decoder_cases(path, repeats):
    """Decoding the same 12-bit film compressed: each available plugin (the `dicom` extra).
    Lossless syntaxes must give the uncompressed values; 12-bit JPEG's plugins must agree
    within 1 stored level (their inverse DCTs round differently)."""
    from pydicom.pixels import pixel_array

    dicom.read_dicom(path)  # registers cxr_d2's imagecodecs plugin
    for syntax, plugins in DECODERS.items():
        ds = pydicom.dcmread(path)
        try:
            _compress(ds, syntax)
        except Exception as e:  # no encoder installed
            print(f"{syntax:22s} not measured: cannot encode ({type(e).__name__})")
            continue
        reference = pydicom.dcmread(path).pixel_array
        first = None  # 12-bit JPEG: the first plugin's values
        line = []
        for plugin in plugins:
            try:
                out = pixel_array(ds, decoding_plugin=plugin)
            except Exception as e:
                line.append(f"{plugin}: unavailable ({type(e).__name__})")
                continue
            if syntax == "JPEGExtended12Bit":
                if first is not None and np.abs(out.astype(int) - first).max() > 1:
                    sys.exit(f"error: {syntax}: {plugin} differs by more than 1 level")
                first = out if first is None else first
            elif not np.array_equal(out, reference):
                sys.exit(f"error: {syntax} through {plugin} is not lossless")
            ms = _median_ms(lambda p=plugin: pixel_array(ds, decoding_plugin=p), repeats)
            line.append(f"{plugin} {ms:6.1f} ms")
        print(f"{syntax:22s} " + "   ".join(line))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(2500, 2048), metavar=("H", "W"))
    parser.add_argument("--bits", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; image {args.size[1]}x{args.size[0]}, "
          f"{args.bits}-bit stored")
    with tempfile.TemporaryDirectory() as folder:
        for name, attrs in CASES.items():
            path = _file(folder, "x.dcm", tuple(args.size), args.bits, attrs)
            ds = dicom._dcmread(path, pixels_bytes=1 << 31)
            arr = ds.pixel_array

            def float_path():
                return unit_to_uint8(dicom.dicom_to_unit(ds, arr, path))

            def lut_path():
                return dicom.dicom_to_uint8(ds, arr, path)

            if not np.array_equal(float_path(), lut_path()):
                sys.exit(f"error: {name}: the two paths differ")
            times = {"float": [], "lut": []}
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                times["float"].append(_median_ms(float_path, 1, warmup=0))
                times["lut"].append(_median_ms(lut_path, 1, warmup=0))
            f, t = (statistics.median(times[k][2:]) for k in ("float", "lut"))
            read = _median_ms(lambda: dicom.read_dicom(path), 5)
            print(f"{name:22s} float {f:7.1f} ms   table {t:6.1f} ms   {f / t:4.1f}x   "
                  f"(whole read_dicom {read:.1f} ms)")
        _cache_case(folder, path, args.repeats)
        _decoder_cases(path, args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
