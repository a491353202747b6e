"""
A pydicom decoding plugin on imagecodecs (part of the `dicom` extra), registered by
:mod:`cxr_d2.data.dicom` under the label "imagecodecs":

- 12-bit JPEG (JPEG Extended, process 2/4) through libjpeg-turbo 3, the library Pillow decodes
  8-bit JPEG with, so both bit depths share one inverse DCT. pylibjpeg's libjpeg rounds it
  differently (up to 1 grey level on pydicom's JPGExtended.dcm) and refuses some files
  libjpeg-turbo reads (pydicom's JPEG-lossy.dcm).
- JPEG 2000 through OpenJPEG, as Pillow and pylibjpeg-openjpeg (the same values), but on as
  many threads as torch uses: one in DataLoader workers, all cores in the main process.

Only monochrome, unsigned samples: others raise NotImplementedError, and pydicom's own
plugins are tried next.
"""
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")  # lossless, lossy
DECODER_DEPENDENCIES = {uid: ("imagecodecs>=2024.1",) for uid in (JPEG_EXTENDED, *JPEG_2000)}
LABEL = "imagecodecs"


def is_available(transfer_syntax) -> bool:
    """True for JPEG Extended and JPEG 2000 when imagecodecs has their decoders."""
    try:
        import imagecodecs
    except ImportError:
        return False
    if transfer_syntax == JPEG_EXTENDED:
        return bool(imagecodecs.JPEG8.available)
    return transfer_syntax in JPEG_2000 and bool(imagecodecs.JPEG2K.available)


def handles(ds) -> bool:
    """Whether the dataset's samples are ones this plugin decodes (monochrome, unsigned)."""
    return int(ds.get("SamplesPerPixel", 1)) == 1 and int(ds.get("PixelRepresentation", 0)) == 0


def _decode_frame(src: bytes, runner) -> bytes:
    """One frame's codestream -> its samples as bytes, in `runner.pixel_dtype` (pydicom's
    plugin interface)."""
    import imagecodecs
    import torch

    if runner.samples_per_pixel != 1 or runner.pixel_representation != 0:
        raise NotImplementedError("imagecodecs plugin: monochrome unsigned samples only")
    if runner.transfer_syntax == JPEG_EXTENDED:
        arr = imagecodecs.jpeg8_decode(src)
    else:
        arr = imagecodecs.jpeg2k_decode(src, numthreads=torch.get_num_threads())
    if arr.ndim != 2 or arr.shape != (runner.rows, runner.columns):
        raise ValueError(f"the codestream holds {arr.shape}; the header says "
                         f"{runner.rows}x{runner.columns}")  # fmt: skip
    return arr.astype(runner.pixel_dtype, copy=False).tobytes()


def register():
    """Add the plugin to pydicom's JPEG Extended and JPEG 2000 decoders (once)."""
    from pydicom.pixels import decoders

    for decoder in (decoders.JPEGExtended12BitDecoder, decoders.JPEG2000LosslessDecoder,
                    decoders.JPEG2000Decoder):  # fmt: skip
        try:
            decoder.add_plugin(LABEL, (__name__, "_decode_frame"))
        except ValueError:  # already added
            pass
