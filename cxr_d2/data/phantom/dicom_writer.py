"""
DICOM files of phantom films, as the real sources store them (`tools/make_phantom.py`, tests
of the DICOM reader).
"""

import os

import numpy as np

__all__ = ["write_dicom"]


def write_dicom(
    path,
    image,
    bits_stored=8,
    monochrome1=False,
    window=None,
    rescale=None,
    patient_id="PHANTOM",
    sop_uid=None,
    transfer_syntax=None,
):
    """
    Write a uint8 (H, W) image as a single-frame DX DICOM file through pydicom.

    Args:
        bits_stored (int): 8 (stored in 8 bits), or 10-16 (stored in 16 bits; the image is
            spread over the full range 0 .. 2**bits_stored - 1).
        monochrome1 (bool): store inverted, PhotometricInterpretation MONOCHROME1.
        window (tuple or None): (center, width) written as the VOI window, in modality values.
        rescale (tuple or None): (slope, intercept) written; stored = (value - b) / m.
        transfer_syntax (UID or None): e.g. pydicom.uid.RLELossless to compress.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    maxval = 2**bits_stored - 1
    values = image.astype(np.float64) / 255.0 * maxval
    if monochrome1:
        values = maxval - values
    if rescale is not None:
        slope, intercept = rescale
        values = (values - intercept) / slope
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    stored = np.clip(np.round(values), 0, maxval).astype(dtype)
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality, ds.PatientID = "DX", patient_id
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 8 if dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.PixelData = stored.tobytes()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
