"""Tiny DICOM writer for tests: short-axis stacks and distractor series with small matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# short-axis plane whose normal points base -> apex (left, anterior, inferior in LPS)
SAX_ROW = (0.8, 0.6, 0.0)
SAX_COL = (0.36, -0.48, -0.8)
AX_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def sax_iop() -> tuple[float, ...]:
    r = np.asarray(SAX_ROW) / np.linalg.norm(SAX_ROW)
    c = np.asarray(SAX_COL)
    c = c - (c @ r) * r
    c = c / np.linalg.norm(c)
    return (*r.tolist(), *c.tolist())


def normal(iop) -> np.ndarray:
    n = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
    return n / np.linalg.norm(n)


def write_image(path: Path, *, patient_id: str, patient_name: str, birth_date: str, study_uid: str,
                series_uid: str, description: str, series_number: int, instance_number: int,
                ipp, iop, image_type=("ORIGINAL", "PRIMARY", "M"), pixels: np.ndarray | None = None,
                spacing=(1.5, 1.5), slope: float = 1.0, intercept: float = 0.0, sop_uid: str | None = None,
                preamble: bool = True, extra: dict | None = None) -> str:
    """Write one MR image; returns its SOPInstanceUID."""
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MR_STORAGE, sop_uid
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, patient_name, birth_date
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.AccessionNumber = "ACC" + patient_id[-4:]
    ds.Modality, ds.SeriesDescription, ds.ProtocolName = "MR", description, description
    ds.SeriesNumber, ds.InstanceNumber = series_number, instance_number
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = [round(float(x), 4) for x in ipp]
    ds.ImageOrientationPatient = [round(float(x), 6) for x in iop]
    ds.SliceLocation = round(float(np.asarray(ipp) @ normal(iop)), 4)
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    pix = np.zeros((32, 32), np.uint16) if pixels is None else np.asarray(pixels, np.uint16)
    ds.Rows, ds.Columns = pix.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pix.tobytes()
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble)
    return sop_uid


def write_stack(root: Path, rng: np.random.Generator, *, patient_id: str, patient_name: str = "Doe^Jane",
                birth_date: str = "19600101", study_uid: str, description: str, series_number: int,
                n_slices: int = 8, image_type=("ORIGINAL", "PRIMARY", "M"), iop=None, step_mm: float = 8.0,
                per_position: int = 1, mixed: bool = False, spacing=(1.5, 1.5), reverse_normal: bool = False,
                ) -> dict:
    """Write a stack in random file names / shuffled instance numbers. Pixel value of slice k (base = 0) is
    ``100 + 10 k`` (phase-sensitive) or ``50 + 10 k`` (magnitude, mixed series). Returns {series_uid, sops}."""
    iop = tuple(iop or sax_iop())
    if reverse_normal:  # flip the column direction: normal flips, base->apex now runs along -normal
        iop = (*iop[:3], *(-np.asarray(iop[3:])).tolist())
    n = normal(iop)
    apex = np.array([1.0, -1.0, -1.0]) / np.sqrt(3)
    sign = 1.0 if n @ apex > 0 else -1.0
    origin = np.array([10.0, -20.0, 30.0])
    series_uid = generate_uid()
    numbers = rng.permutation(n_slices * per_position * (2 if mixed else 1)) + 1
    sops, j = [], 0
    for k in range(n_slices):
        ipp = origin + sign * k * step_mm * n
        kinds = [(image_type, 100 + 10 * k)] + ([(("ORIGINAL", "PRIMARY", "M_IR"), 50 + 10 * k)] if mixed else [])
        for it, val in kinds:
            for _ in range(per_position):
                sop = write_image(root / f"{rng.integers(1 << 40):x}", patient_id=patient_id,
                                  patient_name=patient_name, birth_date=birth_date, study_uid=study_uid,
                                  series_uid=series_uid, description=description, series_number=series_number,
                                  instance_number=int(numbers[j]), ipp=ipp, iop=iop, image_type=it,
                                  pixels=np.full((32, 32), val), spacing=spacing)
                j += 1
                if it is image_type:
                    sops.append(sop)
    return {"series_uid": series_uid, "sops": sops}
