"""Vendor-styled DICOM writing for phantom studies (MR Image Storage, explicit VR little endian, with file meta).

Naming and ImageType conventions differ by vendor the way hospital exports do, so a reader has to select the
PSIR short-axis series from tags (description, ImageType, orientation, positions), not from one fixed string:

- SIEMENS: ``*_MAG`` (ImageType ...\\M\\...) + ``*_PSIR`` (...\\PSIR\\... or ...\\R\\...) series, or both kinds in
  one series, or the PSIR series alone; PSIR pixels stored unsigned with RescaleSlope 2 / Intercept -4096.
- GE: ``MDE PSIR SAX`` / ``DE_PSIR_SAX`` (PSIR alone, signed int16 pixels), optionally beside a magnitude
  ``MDE SAX`` series, or mixed MAGNITUDE / REAL images in one series; ProtocolName is the exam protocol.
- PHILIPS: ``PSIR_SAX`` / ``LGE_PSIR`` mixing M_IR and R_IR images (or R_IR alone), float RescaleSlope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lgeclip.phantom.spec import PatientSpec

UID_ROOT = {"SIEMENS": "1.3.12.2.1107.5.2.30.", "GE": "1.2.840.113619.2.312.", "PHILIPS": "1.3.46.670589.11."}
MANUFACTURER = {"SIEMENS": "SIEMENS", "GE": "GE MEDICAL SYSTEMS", "PHILIPS": "Philips Medical Systems"}
SOFTWARE = {"SIEMENS": "syngo MR E11", "GE": "27\\LX\\MR Software release:DV26.0_R02", "PHILIPS": "5.6.1\\5.6.1.2"}

# per vendor: series kind -> (description choices, ImageType, SequenceName, ScanningSequence)
NAMES: dict[str, dict[str, tuple[list[str], str, str, str]]] = {
    "SIEMENS": {
        "loc": (["localizer", "trufi_loc_multi", "haste_localizer"], "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D",
                "*tfi2d1", "GR"),
        "cine": (["tf2d_cine_SAX", "cine_retro_sax", "CINE_SA_stack"], "ORIGINAL\\PRIMARY\\M\\RETRO\\DIS2D",
                 "*tfi2d1_12", "GR"),
        "ss": (["SS_LGE_SAX_MOCO", "ss lge sax", "TI_SS_LGE_MOCO"], "DERIVED\\PRIMARY\\M\\NORM\\DIS2D\\MOCO",
               "*tfi2d1_97", "GR\\IR"),
        "lax": (["tfl_psir_{v}", "PSIR_{v}"], "ORIGINAL\\PRIMARY\\PSIR\\NORM\\DIS2D", "*tfl2d1", "GR\\IR"),
        "psir": (["tfl_psir_sax", "PSIR_SAX_TI300", "LGE_PSIR_SA", "de_tfl_psir_sa"],
                 "ORIGINAL\\PRIMARY\\PSIR\\NORM\\DIS2D", "*tfl2d1", "GR\\IR"),
        "mag": ([""], "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "*tfl2d1", "GR\\IR"),
    },
    "GE": {
        "loc": (["3-Plane Loc", "3Pl Loc SSFSE", "Scout"], "ORIGINAL\\PRIMARY\\OTHER", "ssfse", "SE"),
        "cine": (["FIESTA CINE SAX", "SAX FIESTA cine", "Cine SA"], "ORIGINAL\\PRIMARY\\OTHER", "fiestac", "GR"),
        "ss": (["SS MDE SAX", "Single Shot DE SA", "SSh MDE"], "ORIGINAL\\PRIMARY\\OTHER", "fgre_ss", "GR\\IR"),
        "lax": (["MDE {v}", "DE PSIR {v}"], "ORIGINAL\\PRIMARY\\OTHER\\PSIR", "fgre_de", "GR\\IR"),
        "psir": (["MDE PSIR SAX", "DE_PSIR_SAX", "PSIR MDE SA"], "ORIGINAL\\PRIMARY\\OTHER\\PSIR", "fgre_de",
                 "GR\\IR"),
        "mag": (["MDE SAX"], "ORIGINAL\\PRIMARY\\OTHER", "fgre_de", "GR\\IR"),
    },
    "PHILIPS": {
        "loc": (["Survey", "SmartSurvey", "sBTFE_survey"], "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "", "GR"),
        "cine": (["sBTFE_BH_SA", "BTFE_SA_CINE", "cine_SA"], "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "", "GR"),
        "ss": (["LGE_SS_SA", "TFE_SS_LGE", "SShot_LGE"], "ORIGINAL\\PRIMARY\\M_IR\\M\\IR", "", "GR\\IR"),
        "lax": (["LGE_PSIR_{v}", "PSIR_{v}"], "ORIGINAL\\PRIMARY\\R_IR\\R\\IR", "", "GR\\IR"),
        "psir": (["PSIR_SAX", "LGE_PSIR", "WIP PSIR SA", "LGE_PSIR_SA"], "ORIGINAL\\PRIMARY\\R_IR\\R\\IR", "",
                 "GR\\IR"),
        "mag": ([""], "ORIGINAL\\PRIMARY\\M_IR\\M\\IR", "", "GR\\IR"),
    },
}


@dataclass
class Image:
    """One image to write: float pixels in signal units and its per-instance geometry/tags."""

    pixels: np.ndarray
    ipp: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: float
    kind: str  # "mag" | "psir" (pixel encoding)
    image_type: str
    trigger_time: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class Series:
    """One series: shared tags + images (written in the given list order; InstanceNumber = list index + 1)."""

    key: str
    description: str
    protocol: str
    number: int
    sequence_name: str
    scanning_sequence: str
    inversion_time: float | None
    thickness: float
    spacing_between: float | None
    images: list[Image] = field(default_factory=list)
    uid: str = ""
    order: int = 0  # acquisition order in the study (series times)
    sop_uids: list[str] = field(default_factory=list)


def make_uid(spec: PatientSpec, *parts: object) -> str:
    """Deterministic vendor-rooted UID from the cohort seed, patient index and ``parts``."""
    return str(generate_uid(prefix=UID_ROOT[spec.vendor], entropy_srcs=[str(spec.seed), str(spec.index),
                                                                       *map(str, parts)]))


def _ds_num(x: float, nd: int = 6) -> str:
    s = f"{float(x):.{nd}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _tm(sec: int) -> str:
    sec = sec % 86400
    return f"{sec // 3600:02d}{sec // 60 % 60:02d}{sec % 60:02d}"


def _encode(spec: PatientSpec, img: Image, scale: float, slope: float) -> tuple[np.ndarray, dict]:
    """Pixel array + rescale tags for the vendor's encoding of magnitude / phase-sensitive images."""
    real = img.pixels * scale
    v = spec.vendor
    if img.kind == "mag":
        if v == "PHILIPS":
            return np.clip(np.round(real / slope), 0, 4095).astype(np.uint16), {"slope": slope, "icpt": 0.0, "bits": 12}
        return np.clip(np.round(real), 0, 4095).astype(np.uint16), {"slope": 1.0, "icpt": 0.0, "bits": 12}
    if v == "SIEMENS":
        return np.clip(np.round((real + 4096) / 2), 0, 4095).astype(np.uint16), {"slope": 2.0, "icpt": -4096.0,
                                                                                "bits": 12}
    if v == "GE":
        return np.clip(np.round(real), -32768, 32767).astype(np.int16), {"slope": 1.0, "icpt": 0.0, "bits": 16}
    icpt = -2048.0 * slope
    return np.clip(np.round((real - icpt) / slope), 0, 4095).astype(np.uint16), {"slope": slope, "icpt": icpt,
                                                                                 "bits": 12}


def _dataset(spec: PatientSpec, study_uid: str, frame_uid: str, s: Series, img: Image, inst: int, sop: str,
             scale: float, slope: float) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = img.image_type.split("\\")
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    st = spec.study_time
    sec = int(st[:2]) * 3600 + int(st[2:4]) * 60 + int(st[4:6]) + 150 * (s.order + 1)
    t_series = _tm(sec)
    t_inst = _tm(sec + 2 * inst)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = spec.study_date
    ds.StudyTime, ds.SeriesTime = spec.study_time, t_series
    ds.AcquisitionTime = ds.ContentTime = t_inst + f".{inst * 2700 % 1000000:06d}"
    ds.AccessionNumber = spec.accession
    ds.Modality = "MR"
    ds.Manufacturer = MANUFACTURER[spec.vendor]
    ds.InstitutionName = spec.institution
    ds.ReferringPhysicianName = "SMITH^ALAN"
    ds.StationName = f"MR{spec.index % 7 + 1:02d}"
    ds.StudyDescription = "CARDIAC MRI^VIABILITY" if spec.vendor != "GE" else "CMR VIABILITY"
    ds.SeriesDescription = s.description
    ds.ManufacturerModelName = spec.model
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = spec.sex
    ds.PatientAge = f"{spec.age:03d}Y"
    ds.PatientWeight = _ds_num(55 + (spec.index * 37) % 50, 1)
    ds.BodyPartExamined = "HEART" if spec.vendor != "GE" else "CHEST"
    ds.ScanningSequence = s.scanning_sequence.split("\\")
    ds.SequenceVariant = ["SK", "SP", "MP"] if "IR" in s.scanning_sequence else ["SK", "SP"]
    ds.ScanOptions = "IR" if "IR" in s.scanning_sequence else ""
    ds.MRAcquisitionType = "2D"
    if s.sequence_name:
        ds.SequenceName = s.sequence_name
    ds.SliceThickness = _ds_num(s.thickness, 2)
    ds.RepetitionTime = _ds_num(3.2 if "IR" not in s.scanning_sequence else 700.0, 2)
    ds.EchoTime = _ds_num(1.4 if "IR" not in s.scanning_sequence else 3.1, 2)
    if s.inversion_time is not None:
        ds.InversionTime = _ds_num(s.inversion_time, 1)
    ds.MagneticFieldStrength = _ds_num(spec.field_strength, 1)
    if s.spacing_between is not None:
        ds.SpacingBetweenSlices = _ds_num(s.spacing_between, 2)
    ds.TriggerTime = _ds_num(img.trigger_time, 1)
    ds.FlipAngle = _ds_num(25 if "IR" in s.scanning_sequence else 50, 1)
    ds.SoftwareVersions = SOFTWARE[spec.vendor]
    ds.ProtocolName = s.protocol
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = s.uid
    ds.StudyID = str(1 + spec.index % 900)
    ds.SeriesNumber = s.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = inst
    ds.ImagePositionPatient = [_ds_num(x) for x in img.ipp]
    ds.ImageOrientationPatient = [_ds_num(x, 8) for x in (*img.row_dir, *img.col_dir)]
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    normal = np.cross(img.row_dir, img.col_dir)
    ds.SliceLocation = _ds_num(float(np.asarray(img.ipp) @ normal), 6)
    arr, enc = _encode(spec, img, scale, slope)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.PixelSpacing = [_ds_num(img.spacing, 6), _ds_num(img.spacing, 6)]
    ds.BitsAllocated = 16
    ds.BitsStored = enc["bits"]
    ds.HighBit = enc["bits"] - 1
    ds.PixelRepresentation = 1 if arr.dtype == np.int16 else 0
    wc = 0.5 * scale if img.kind == "psir" else 0.6 * scale
    ds.WindowCenter, ds.WindowWidth = _ds_num(wc, 1), _ds_num(2.0 * scale, 1)
    ds.RescaleIntercept = _ds_num(enc["icpt"], 6)
    ds.RescaleSlope = _ds_num(enc["slope"], 6)
    ds.RescaleType = "US"
    for k, v in img.extra.items():
        setattr(ds, k, v)
    ds.PixelData = arr.tobytes()
    return ds


def write_series(spec: PatientSpec, study_dir: Path, study_uid: str, frame_uid: str, s: Series,
                 rng: np.random.Generator, subfolder: bool) -> list[str]:
    """Write all images of ``s`` under ``study_dir`` with random hex names; returns SOP UIDs in list order."""
    folder = study_dir / (rng.bytes(4).hex() if subfolder else "")
    folder.mkdir(parents=True, exist_ok=True)
    scale = float(rng.uniform(900, 1800))
    slope = float(np.round(rng.uniform(1.2, 3.5), 6))
    sops = []
    for i, img in enumerate(s.images):
        sop = make_uid(spec, s.key, i)
        ds = _dataset(spec, study_uid, frame_uid, s, img, i + 1, sop, scale, slope)
        ds.save_as(folder / f"{rng.bytes(8).hex()}.dcm", enforce_file_format=True)
        sops.append(sop)
    s.sop_uids = sops
    return sops
