"""The cohort manifest: the contract between ingestion (DICOM / EMIDEC / phantom) and everything after it.

``COHORT_DIR/manifest.csv`` has one row per selected slice (columns in ``MANIFEST_COLUMNS``) and
``COHORT_DIR/excluded.csv`` one row per skipped study (``study``, ``reason``). Each slice array lives in
``COHORT_DIR/<image_path>`` as an ``.npz`` with:

- ``image``: float32 (H, W), rows x columns as stored in the source (DICOM rescale applied);
- ``spacing_mm``: float32 (2,), (row, col) pixel spacing in mm;
- optional ground truth (phantom truth / EMIDEC labels), same grid as ``image``: ``myocardium``,
  ``blood_pool``, ``rv``, ``scar``, ``mvo`` (uint8 0/1) and ``rvip`` float32 (2, 2) = [[ant_row, ant_col],
  [inf_row, inf_col]] in pixels (NaN when unknown).

No patient name, ID or birth date ever appears here: ``patient_key`` is a salted hash.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lgeclip.utils import atomic_write_text, stable_hash

LEVELS = ("basal", "mid", "apical")
LGE_STATUS = ("positive", "negative", "unknown")
MANIFEST_COLUMNS = (
    "patient_key", "level", "slice_index", "n_slices", "image_path", "spacing_mm", "sentences", "label",
    "source", "has_masks", "scar_truth", "scar_pattern",
)
DEFAULT_SALT = "lgeclip-v1"


def patient_key(identifier: str, salt: str = DEFAULT_SALT) -> str:
    """Stable pseudonymous key for a patient identifier (salted sha256, 12 hex digits, prefixed ``pt-``)."""
    return "pt-" + stable_hash(salt, str(identifier).strip())


STUDY_SEP = "~"  # a case key of a patient with several studies: ``<patient key>~<study hash>``


def study_key(patient: str, study_uid: str, several: bool) -> str:
    """The key of one study (a cohort case, a prediction folder): the patient's key when it is the patient's only
    study, else ``<patient key>~<hash of the StudyInstanceUID>`` so that two studies of one patient stay apart
    (while :func:`patient_of` still joins them, e.g. into one split fold)."""
    return f"{patient}{STUDY_SEP}{stable_hash(str(study_uid), length=8)}" if several else patient


def patient_of(key: str) -> str:
    """The patient key of a case key (the key itself for a patient's only study)."""
    return key.split(STUDY_SEP, 1)[0]


@dataclass
class SliceRecord:
    """One manifest row. ``scar_truth`` is 1/0 when pixel truth is known, else None; ``scar_pattern`` names the
    patient's scar pattern where the truth knows it (phantom: ischaemic, mid-wall, subepicardial, rvip; EMIDEC
    infarcts: ischaemic), else ""."""

    patient_key: str
    level: str
    slice_index: int
    n_slices: int
    image_path: str
    spacing_mm: tuple[float, float]
    sentences: list[str] = field(default_factory=list)
    label: str = "unknown"
    source: str = "dicom"
    has_masks: bool = False
    scar_truth: int | None = None
    scar_pattern: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"{self.patient_key}: level {self.level!r} not in {LEVELS}")
        if self.label not in LGE_STATUS:
            raise ValueError(f"{self.patient_key}: label {self.label!r} not in {LGE_STATUS}")

    @property
    def slice_id(self) -> str:
        return f"{self.patient_key}_{self.slice_index:02d}_{self.level}"

    @property
    def stack(self) -> tuple[str, int]:
        """(stack id ``<case>/<stack number>``, position in the stack): a case may hold several stacks of
        ``n_slices`` each (ACDC's two frames are numbered on: ``slice_index = frame * n_slices + position``)."""
        n = max(self.n_slices, 1)
        return (f"{self.patient_key}/{self.slice_index // n}", self.slice_index % n)

    def to_row(self) -> dict[str, str]:
        d = asdict(self)
        d["spacing_mm"] = json.dumps([round(float(s), 6) for s in self.spacing_mm])
        d["sentences"] = json.dumps(self.sentences, ensure_ascii=False)
        d["has_masks"] = "1" if self.has_masks else "0"
        d["scar_truth"] = "" if self.scar_truth is None else str(int(self.scar_truth))
        return {k: str(d[k]) for k in MANIFEST_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> SliceRecord:
        sp = json.loads(row["spacing_mm"])
        sp = (float(sp), float(sp)) if isinstance(sp, int | float) else (float(sp[0]), float(sp[1]))
        st = row.get("scar_truth", "")
        return cls(
            patient_key=row["patient_key"], level=row["level"], slice_index=int(row["slice_index"]),
            n_slices=int(row["n_slices"]), image_path=row["image_path"], spacing_mm=sp,
            sentences=list(json.loads(row["sentences"] or "[]")), label=row["label"],
            source=row.get("source", "dicom"), has_masks=row.get("has_masks", "0") == "1",
            scar_truth=None if st in ("", None) else int(st), scar_pattern=row.get("scar_pattern") or "",
        )


def write_manifest(cohort_dir: Path, records: list[SliceRecord]) -> Path:
    """Write ``manifest.csv`` atomically."""
    import io as _io

    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS))
    w.writeheader()
    for r in records:
        w.writerow(r.to_row())
    path = Path(cohort_dir) / "manifest.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def read_manifest(cohort_dir: Path) -> list[SliceRecord]:
    """Read ``manifest.csv`` of a cohort folder."""
    path = Path(cohort_dir) / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(f"{cohort_dir}: no manifest.csv (run `lgeclip ingest` first)")
    with path.open(newline="") as f:
        return [SliceRecord.from_row(r) for r in csv.DictReader(f)]


def write_excluded(cohort_dir: Path, rows: list[tuple[str, str]]) -> Path:
    """Write ``excluded.csv`` (study, reason) atomically."""
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["study", "reason"])
    w.writerows(rows)
    path = Path(cohort_dir) / "excluded.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def read_excluded(cohort_dir: Path) -> list[tuple[str, str]]:
    path = Path(cohort_dir) / "excluded.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [(r["study"], r["reason"]) for r in csv.DictReader(f)]


def save_slice(path: Path, image: np.ndarray, spacing_mm: tuple[float, float], **truth: np.ndarray) -> None:
    """Save one slice array (+ optional truth arrays) as compressed npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"image": np.asarray(image, np.float32), "spacing_mm": np.asarray(spacing_mm, np.float32)}
    for k, v in truth.items():
        if v is not None:
            arrays[k] = np.asarray(v)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_slice(path: Path) -> dict[str, np.ndarray]:
    """Load a slice npz into a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assign_split(key: str, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> str:
    """Deterministic patient-level split ("train" / "val" / "test") from a hash of the key and seed."""
    u = int(stable_hash(str(seed), key, length=8), 16) / 16**8
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def split_patients(keys: list[str], seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                   strata: dict[str, str] | None = None) -> dict[str, str]:
    """Exact-proportion patient split, stratified by ``strata`` (e.g. label) when given; deterministic in seed."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for k in sorted(set(keys)):
        groups.setdefault((strata or {}).get(k, ""), []).append(k)
    out: dict[str, str] = {}
    for g in sorted(groups):
        ks = list(groups[g])
        rng.shuffle(ks)
        n = len(ks)
        n_tr = int(round(fractions[0] * n))
        n_va = int(round(fractions[1] * n))
        if n >= 3 and fractions[2] > 0 and n_tr + n_va >= n:
            n_tr = max(1, n - n_va - 1)
        for i, k in enumerate(ks):
            out[k] = "train" if i < n_tr else ("val" if i < n_tr + n_va else "test")
    return out
