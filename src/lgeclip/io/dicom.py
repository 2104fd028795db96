"""DICOM tree scan, LGE series selection, slice ordering along the LV long axis, level choice.

Contract: ``scan_tree(root)`` walks any layout (any file names, with or without ``.dcm``), reads headers only
and groups instances by the StudyInstanceUID / SeriesInstanceUID *tags* into ``SeriesInfo``; files that
cannot be read come back as ``(path, reason)``. ``select_lge_series(series_of_study, rules)`` returns the
phase-sensitive (PSIR) short-axis LGE series (mixed magnitude/PSIR series are narrowed to their PSIR
instances) and a reason that explains the choice. ``order_slices(series)`` orders instances base -> apex from
ImagePositionPatient projected on the slice normal; ``choose_levels(n_slices, n)`` picks basal/mid/apical.
Points and vectors are in the DICOM patient frame (LPS, mm). ``SeriesInfo.patient_id`` / ``patient_name`` /
``birth_date`` are held in memory for joining and scrubbing only: never write or log them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from lgeclip.config import load_config
from lgeclip.io.cohort import patient_key, study_key
from lgeclip.utils import config_dir, stable_hash

DEFAULT_RULES_PATH = config_dir("ingest", "series_rules.yaml")
# Anatomical prior: from base to apex the LV long axis points to the patient's left (+x), anterior (-y) and
# inferior (-z) in DICOM LPS coordinates. Dextrocardia breaks it (documented weakness).
APEX_DIRECTION = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
_SCAN_TAGS = [
    "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "ProtocolName", "ImageType",
    "SequenceName", "InversionTime", "ImageOrientationPatient", "ImagePositionPatient", "InstanceNumber",
    "SliceLocation", "SeriesNumber", "Modality", "PatientID", "PatientName", "PatientBirthDate", "PixelSpacing",
    "Rows", "Columns", "AccessionNumber", "MediaStorageSOPClassUID", "SOPClassUID",
]


@dataclass
class SeriesRules:
    """Tag-based rules for picking the LGE short-axis series (regexes match lower-case text, ``_-/.`` -> space)."""

    # a series is an LGE candidate when its description/protocol/sequence name matches one of these ...
    lge_patterns: list[str] = field(default_factory=lambda: [
        r"\bpsir\b", r"\blge\b", r"\bde\b", r"\bmde\b", r"delayed", r"\blate\b", r"viabilit", r"\bhyper ?enh",
        r"\bir ?fl", r"phase ?sens",
    ])
    # ... or its ImageType says phase-sensitive
    psir_patterns: list[str] = field(default_factory=lambda: [r"\bpsir\b", r"phase ?sens"])
    phase_sensitive_types: list[str] = field(default_factory=lambda: ["PSIR", "R", "REAL", "R_IR", "PHASE SENSITIVE"])
    magnitude_types: list[str] = field(default_factory=lambda: ["M", "MAG", "M_IR", "MAGNITUDE"])
    # hard exclusions: reason -> regex on description/protocol (sequence name is only used for LGE matching)
    exclude: dict[str, str] = field(default_factory=lambda: {
        "localizer/scout": r"\b(locali[sz]er|loc|scout|(smart ?)?survey|(tri ?)?pilot|3 ?plane|ti ?(scout|finder))\b",
        "cine/ssfp": r"\b(cine|ssfp|true ?fisp|trufi|fiesta|s?b ?t?ffe|s?btfe|balanced)\b",
        "single-shot": r"\b(single ?shot|sshot|ssh|ss|haste|moco)\b",
        "long-axis": r"\b([234] ?ch|[234] ?chamber|lax|long ?axis|lvot|vla|hla)\b",
        "T1 map/MOLLI": r"\b(molli|shmolli|sasha|t1 ?maps?|t1 ?mapping|t2 ?maps?|ecv|map)\b",
    })
    exclude_image_types: list[str] = field(default_factory=lambda: ["LOCALIZER", "T1 MAP", "T1MAP", "MAP", "CINE"])
    allow_magnitude_only: bool = False  # accept a magnitude-only IR series when no phase-sensitive one exists
    min_slices: int = 3  # a short-axis stack has >= this many parallel slices at distinct positions
    max_per_position: int = 3  # more instances than this at one position = cine / multi-phase: reject
    parallel_tol: float = 0.02  # 1 - |cos| between slice normals still counted as parallel
    position_tol_mm: float = 0.5  # slices closer than this along the normal share a position
    score_psir_name: float = 10.0
    score_psir_type: float = 10.0
    score_lge_name: float = 5.0
    score_per_slice: float = 0.1

    def __post_init__(self) -> None:
        for p in [*self.lge_patterns, *self.psir_patterns, *self.exclude.values()]:
            re.compile(p)
        if self.min_slices < 2 or self.max_per_position < 1:
            raise ValueError(f"SeriesRules: min_slices {self.min_slices} / max_per_position {self.max_per_position}")


def load_rules(path: str | Path | None = None) -> SeriesRules:
    """Series rules from ``path`` (YAML), else the defaults (which ``configs/ingest/series_rules.yaml`` mirrors)."""
    if isinstance(path, SeriesRules):
        return path
    return load_config(SeriesRules, path) if path else SeriesRules()


@dataclass
class InstanceInfo:
    """One image file of a series (header only)."""

    path: Path
    sop_uid: str
    instance_number: int | None
    ipp: tuple[float, float, float] | None
    iop: tuple[float, ...] | None
    image_type: tuple[str, ...]
    slice_location: float | None = None
    pixel_spacing: tuple[float, float] | None = None


@dataclass
class SeriesInfo:
    """A series of one study, grouped from tags."""

    study_uid: str
    series_uid: str
    description: str = ""
    protocol: str = ""
    sequence_name: str = ""
    image_types: tuple[str, ...] = ()
    inversion_time: float | None = None
    orientation: tuple[float, ...] | None = None
    series_number: int | None = None
    modality: str = ""
    accession: str = ""
    patient_id: str = field(default="", repr=False)  # PHI: join key only
    patient_name: str = field(default="", repr=False)  # PHI: scrubbing only
    birth_date: str = field(default="", repr=False)  # PHI: scrubbing only
    instances: list[InstanceInfo] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.instances)

    @property
    def label(self) -> str:
        return f"#{self.series_number if self.series_number is not None else '?'} {self.description!r}"


def _f(v, n: int | None = None):
    try:
        out = tuple(float(x) for x in v) if n else float(v)
    except (TypeError, ValueError):
        return None
    return out if not n or len(out) == n else None


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
    except InvalidDicomError:
        # no preamble / DICM marker: accept only if a forced read yields the identifying UIDs
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x02\x00"):
            raise
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_SCAN_TAGS)
        if not all(getattr(ds, t, None) for t in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")):
            raise InvalidDicomError("forced read has no SOP/Study/Series UIDs") from None
        return ds


def _dicomdir_files(path: Path) -> dict[str, Path]:
    """Real path -> path (under the scanned root) of each file a DICOMDIR's directory records reference; empty if
    unreadable. The scan reads every file of the tree anyway; the index only tells which listed files are missing."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001 - a broken index loses nothing: the images are found by the walk
        return {}
    out = {}
    for rec in getattr(ds, "DirectoryRecordSequence", []) or []:
        fid = getattr(rec, "ReferencedFileID", None)
        if fid:
            parts = [str(fid)] if isinstance(fid, str) else [str(x) for x in fid]
            ref = Path(path).parent.joinpath(*parts)
            out[os.path.realpath(ref)] = ref
    return out


def scan_tree(root: str | Path) -> tuple[list[SeriesInfo], list[tuple[Path, str]]]:
    """Walk ``root``; return series (grouped by Study/Series UID tags) and ``(path, reason)`` for skipped files
    and folders.

    Links are followed (a folder of linked studies works), but no folder or file is read twice: a link back up
    the tree, or a second link to the same study, is skipped with its reason (by real path). A folder that cannot
    be listed (permissions) is a skipped entry, and an instance whose SOP Instance UID was already read (a copy
    of the same image) is left out of its series. A DICOMDIR is an index: the files it lists are read by the
    walk like any other, and those it lists that are missing are skipped entries."""
    series: dict[tuple[str, str], SeriesInfo] = {}
    skipped: list[tuple[Path, str]] = []
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    seen_sops: set[tuple[str, str, str]] = set()
    indexed: dict[str, Path] = {}  # files a DICOMDIR lists (real path -> path under root)

    def unreadable(err: OSError) -> None:
        skipped.append((Path(err.filename or root), f"unreadable folder ({type(err).__name__})"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen_dirs:  # a link back into the tree (or a second link to one folder): never twice
            skipped.append((Path(dirpath), "folder already scanned through another path (link)"))
            dirnames[:] = []
            continue
        seen_dirs.add(real_dir)
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            real = os.path.realpath(path)
            if real in seen_files:
                skipped.append((path, "file already scanned through another path (link)"))
                continue
            seen_files.add(real)
            try:
                ds = _read_header(path)
            except InvalidDicomError:
                skipped.append((path, "not a DICOM file"))
                continue
            except Exception as e:  # truncated / corrupt headers raise many kinds of errors
                skipped.append((path, f"unreadable DICOM header ({type(e).__name__})"))
                continue
            meta = getattr(ds, "file_meta", None)
            if str(getattr(meta, "MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10":
                refs = _dicomdir_files(path)
                indexed.update(refs)
                skipped.append((path, f"DICOMDIR (an index of {len(refs)} files; the images are read by the scan)"))
                continue
            study, ser, sop = (str(getattr(ds, t, "") or "") for t in
                               ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
            if not (study and ser and sop):
                # the file meta names an instance but the data set stops before its UIDs: a cut-off copy
                cut = not (study or ser or sop) and getattr(meta, "MediaStorageSOPInstanceUID", None)
                skipped.append((path, "truncated DICOM file (the data set ends before its UIDs)" if cut
                                else "DICOM without Study/Series/SOP Instance UID"))
                continue
            if "Rows" not in ds:
                skipped.append((path, "DICOM without an image (no Rows)"))
                continue
            if (study, ser, sop) in seen_sops:
                skipped.append((path, "repeated SOP Instance UID (a copy of an image already read)"))
                continue
            seen_sops.add((study, ser, sop))
            s = series.get((study, ser))
            if s is None:
                pn = getattr(ds, "PatientName", "")
                s = series[(study, ser)] = SeriesInfo(
                    study_uid=study, series_uid=ser, description=str(getattr(ds, "SeriesDescription", "") or ""),
                    protocol=str(getattr(ds, "ProtocolName", "") or ""),
                    sequence_name=str(getattr(ds, "SequenceName", "") or ""),
                    inversion_time=_f(getattr(ds, "InversionTime", None)),
                    series_number=int(ds.SeriesNumber) if getattr(ds, "SeriesNumber", None) not in (None, "") else None,
                    modality=str(getattr(ds, "Modality", "") or ""), accession=str(getattr(ds, "AccessionNumber", "")),
                    patient_id=str(getattr(ds, "PatientID", "") or "").strip(), patient_name=str(pn or ""),
                    birth_date=str(getattr(ds, "PatientBirthDate", "") or ""))
            it = getattr(ds, "ImageType", None) or []
            it = (it,) if isinstance(it, str) else tuple(str(x).strip().upper() for x in it)
            inum = getattr(ds, "InstanceNumber", None)
            s.instances.append(InstanceInfo(
                path=path, sop_uid=sop, instance_number=int(inum) if inum not in (None, "") else None,
                ipp=_f(getattr(ds, "ImagePositionPatient", None), 3), iop=_f(getattr(ds, "ImageOrientationPatient",
                                                                                   None), 6),
                image_type=it, slice_location=_f(getattr(ds, "SliceLocation", None)),
                pixel_spacing=_f(getattr(ds, "PixelSpacing", None), 2)))
    for real in sorted(indexed):  # an export that lost files its DICOMDIR lists: say so (they cannot be read)
        if not os.path.isfile(real):
            skipped.append((indexed[real], "listed in a DICOMDIR but missing"))
    out = sorted(series.values(), key=lambda s: (s.study_uid, s.series_number or 0, s.series_uid))
    for s in out:
        s.image_types = tuple(sorted({t for i in s.instances for t in i.image_type}))
        s.orientation = next((i.iop for i in s.instances if i.iop), None)
    return out, skipped


def group_studies(series: list[SeriesInfo]) -> dict[str, list[SeriesInfo]]:
    """Series grouped by StudyInstanceUID (order kept)."""
    out: dict[str, list[SeriesInfo]] = {}
    for s in series:
        out.setdefault(s.study_uid, []).append(s)
    return out


def study_keys(studies: dict[str, list[SeriesInfo]]) -> dict[str, str]:
    """StudyInstanceUID -> key of each study of :func:`group_studies`: the salted patient key, with a study suffix
    when the patient has several studies in the batch (``io.cohort.study_key``); a study without PatientID is
    ``study-<hash of its UID>``."""
    pkey = {uid: patient_key(ss[0].patient_id) if ss[0].patient_id else "study-" + stable_hash(uid)
            for uid, ss in studies.items()}
    n = Counter(pkey.values())
    return {uid: study_key(k, uid, n[k] > 1) for uid, k in pkey.items()}


def _norm(text: str) -> str:
    return re.sub(r"[_\-/.:]+", " ", text.lower())


def _kind(inst: InstanceInfo, rules: SeriesRules) -> str:
    types = set(inst.image_type)
    if types & {t.upper() for t in rules.phase_sensitive_types}:
        return "psir"
    if types & {t.upper() for t in rules.magnitude_types}:
        return "mag"
    return "unknown"


def _normal(iop) -> np.ndarray:
    r, c = np.asarray(iop[:3]), np.asarray(iop[3:])
    n = np.cross(r, c)
    return n / (np.linalg.norm(n) or 1.0)


def stack_geometry(instances: list[InstanceInfo], rules: SeriesRules) -> tuple[int, int, str]:
    """(distinct positions, max instances at one position, problem or "") for a candidate stack."""
    geo = [i for i in instances if i.ipp and i.iop]
    if len(geo) < len(instances):
        return 0, 0, "missing ImagePositionPatient/ImageOrientationPatient"
    n0 = _normal(geo[0].iop)
    if any(1 - abs(float(_normal(i.iop) @ n0)) > rules.parallel_tol for i in geo):
        return 0, 0, "slices not parallel (long-axis/multi-plane)"
    pos = np.sort(np.array([float(np.asarray(i.ipp) @ n0) for i in geo]))
    groups = np.split(pos, np.where(np.diff(pos) > rules.position_tol_mm)[0] + 1)
    return len(groups), max(len(g) for g in groups), ""


def _assess(s: SeriesInfo, rules: SeriesRules) -> tuple[float | None, str, SeriesInfo]:
    """Score one series (None = rejected) with an explanation; mixed series narrowed to PSIR instances."""
    names = _norm(" ".join([s.description, s.protocol]))
    for why, pat in rules.exclude.items():
        if re.search(pat, names):
            return None, why, s
    bad = set(s.image_types) & {t.upper() for t in rules.exclude_image_types}
    if bad:
        return None, f"ImageType {sorted(bad)}", s
    full = _norm(" ".join([s.description, s.protocol, s.sequence_name]))
    kinds = [_kind(i, rules) for i in s.instances]
    psir_name = any(re.search(p, full) for p in rules.psir_patterns)
    lge_name = any(re.search(p, full) for p in rules.lge_patterns)
    if "psir" in kinds:
        if "mag" in kinds:
            s = replace(s, instances=[i for i, k in zip(s.instances, kinds, strict=True) if k != "mag"])
        psir_type = True
    else:
        psir_type = False
        if "mag" in kinds and not rules.allow_magnitude_only:
            return None, "magnitude-only", s
    if not (lge_name or psir_type):
        return None, "not LGE (no LGE/PSIR name, no phase-sensitive ImageType)", s
    n_pos, per_pos, problem = stack_geometry(s.instances, rules)
    if problem:
        return None, problem, s
    if per_pos > rules.max_per_position:
        return None, f"{per_pos} images per position (cine/multi-phase)", s
    if n_pos < rules.min_slices:
        return None, f"only {n_pos} slice position(s), not a short-axis stack", s
    score = (rules.score_psir_name * psir_name + rules.score_psir_type * psir_type + rules.score_lge_name * lge_name
             + rules.score_per_slice * n_pos)
    why = ", ".join(w for w, ok in [("PSIR name", psir_name), ("phase-sensitive ImageType", psir_type),
                                    ("LGE name", lge_name), (f"{n_pos} SAX slices", True)] if ok)
    return score, why, s


def select_lge_series(study_series: list[SeriesInfo], rules: SeriesRules | None = None
                      ) -> tuple[SeriesInfo | None, str]:
    """Pick the PSIR LGE short-axis series of a study; returns (series or None, explanation).

    Ties go to the later series number (a repeat is usually the better acquisition). A series holding both
    magnitude and phase-sensitive images is returned narrowed to its phase-sensitive instances."""
    rules = rules or SeriesRules()
    scored, rejected = [], []
    for s in study_series:
        score, why, narrowed = _assess(s, rules)
        if score is None:
            rejected.append(f"{s.label}: {why}")
        else:
            scored.append((score, s.series_number or 0, why, narrowed))
    rej = "; ".join(rejected)
    if not scored:
        return None, f"no LGE short-axis series ({rej or 'no series'})"
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    score, _, why, best = scored[0]
    others = [f"{t[3].label}: score {t[0]:.1f}" for t in scored[1:]]
    msg = f"chose {best.label} (score {score:.1f}: {why})"
    if others:
        msg += "; lower: " + "; ".join(others)
    return best, msg + (f"; rejected: {rej}" if rej else "")


def order_slices(series: SeriesInfo | list[InstanceInfo], position_tol_mm: float = 0.5
                 ) -> tuple[list[InstanceInfo], str]:
    """Instances ordered base -> apex along the slice normal (never by file name / InstanceNumber).

    Projects ImagePositionPatient on n = row x col; the apex end is the one further along ``APEX_DIRECTION``
    (left-anterior-inferior, LPS). One instance per position is kept (the highest InstanceNumber, i.e. the
    latest repeat). Returns (ordered instances, note on the direction rule)."""
    inst = series.instances if isinstance(series, SeriesInfo) else list(series)
    if not inst:
        return [], "empty"
    if any(i.ipp is None or i.iop is None for i in inst):
        raise ValueError("order_slices: an instance lacks ImagePositionPatient/ImageOrientationPatient")
    n = _normal(inst[0].iop)
    s = np.array([float(np.asarray(i.ipp) @ n) for i in inst])
    by_pos: list[tuple[float, InstanceInfo]] = []
    for idx in np.argsort(s, kind="stable"):
        i = inst[idx]
        if by_pos and s[idx] - by_pos[-1][0] <= position_tol_mm:
            if (i.instance_number or 0) >= (by_pos[-1][1].instance_number or 0):
                by_pos[-1] = (by_pos[-1][0], i)
            continue
        by_pos.append((float(s[idx]), i))
    ordered = [i for _, i in by_pos]
    d = float(n @ APEX_DIRECTION)
    if abs(d) < 0.1:
        note = f"ambiguous normal (n.apex={d:+.2f}); kept increasing position as base->apex"
    else:
        note = f"normal.apex_dir={d:+.2f}"
    if d < -0.1:
        ordered.reverse()
    return ordered, note


def level_of(index: int, n_slices: int) -> str:
    """Level of slice ``index`` (0 = base) by thirds of the stack."""
    f = (index + 0.5) / max(n_slices, 1)
    return "basal" if f < 1 / 3 else ("mid" if f < 2 / 3 else "apical")


def choose_levels(n_slices: int, n: int = 3) -> list[tuple[int, str]]:
    """Slice indices (0 = base) and levels to keep: n=3 -> ~20/50/80 % of the stack; otherwise n evenly spread
    slices (all when n >= n_slices), each labelled by its third of the stack."""
    if n_slices <= 0 or n <= 0:
        return []
    if n == 3 and n_slices >= 3:
        idx = [int(np.floor(f * (n_slices - 1) + 0.5)) for f in (0.2, 0.5, 0.8)]
        return list(zip(idx, ("basal", "mid", "apical"), strict=True))
    if n >= n_slices:
        idx = list(range(n_slices))
    else:
        idx = sorted({int(np.floor((k + 0.5) / n * n_slices)) for k in range(n)})
    return [(i, level_of(i, n_slices)) for i in idx]


def read_pixels(path: str | Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Float32 image (rescale slope/intercept applied) and (row, col) PixelSpacing (None if missing).

    Compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) decode through pydicom's handlers; what cannot be
    read raises ``ValueError`` with a reason that names it (no path or header text, so no PHI)."""
    ds = pydicom.dcmread(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"multi-frame image ({frames} frames, e.g. enhanced MR): not read; export single-frame "
                         "images")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        img = ds.pixel_array.astype(np.float32)
    except Exception as e:
        syntax = f"{ts.name}, " if ts is not None else ""
        raise ValueError(f"unreadable pixel data ({syntax}{type(e).__name__})") from e
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    icpt = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return img * slope + icpt, _f(getattr(ds, "PixelSpacing", None), 2)
