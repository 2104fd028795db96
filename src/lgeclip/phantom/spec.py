"""Per-patient phantom specification: everything random about one patient, drawn once from its own generator.

``generate_patient(seed, index)`` is pure (no files): demographics and fake PHI, scanner vendor, slice-stack
geometry in the DICOM patient frame (LPS, mm), the heart shape, the scar (``ScarSpec`` or None) and the
clinical facts a report is written from. Rendering (``render``), scar fields (``scar``) and DICOM writing
(``dicomio``) only read the spec, so a cohort is reproducible from ``(seed, index)`` alone.

Heart frame: angles ``alpha`` in degrees around the LV centre, 0 = anterior, +90 = septal (towards the RV),
180 = inferior, 270 = lateral. ``z`` is mm from the LV base (mitral plane) towards the apex; the endocardial
cavity closes at ``z = length``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import numpy as np

VENDORS = ("SIEMENS", "GE", "PHILIPS")
SLICE_MM = 8.0  # slice thickness == spacing between slices of the LGE short-axis stack
INDICATIONS = {
    None: ["chest pain", "cardiomyopathy", "ventricular tachycardia", "suspected myocarditis", "palpitations",
           "prior myocardial infarction"],
    "ischaemic": ["prior myocardial infarction", "chest pain", "ventricular tachycardia", "cardiomyopathy"],
    "mid-wall": ["cardiomyopathy", "ventricular tachycardia", "palpitations"],
    "subepicardial": ["suspected myocarditis", "chest pain"],
    "rvip": ["cardiomyopathy", "suspected myocarditis", "chest pain"],
}
_FIRST_M = ["JOHN", "PAUL", "MICHAEL", "DAVID", "JAMES", "ROBERT", "PETER", "THOMAS", "MARK", "ANDREW", "KEVIN",
            "LUCAS", "AHMED", "MARCO", "PIERRE", "JAN", "CARLOS", "HENRY", "GEORGE", "SAMUEL"]
_FIRST_F = ["JANE", "MARY", "ANNA", "SARAH", "LAURA", "EMMA", "SOPHIE", "MARIA", "LINDA", "CLAIRE", "JULIA",
            "FATIMA", "ELENA", "HELEN", "NORA", "ROSE", "IRENE", "LUCY", "ALICE", "KATE"]
_LAST = ["DOE", "SMITH", "MARTIN", "DUBOIS", "MUELLER", "ROSSI", "GARCIA", "JOHNSON", "BROWN", "WILSON", "MOREAU",
         "SCHMIDT", "BIANCHI", "LOPEZ", "TAYLOR", "NGUYEN", "KOWALSKI", "JANSEN", "SILVA", "EVANS", "BERNARD",
         "FISCHER", "COHEN", "PETERSEN", "OKAFOR", "HUGHES", "LAMBERT", "WEBER", "MORALES", "WALSH"]
_INSTITUTIONS = ["ST MARY GENERAL HOSPITAL", "CITY HEART CENTRE", "UNIVERSITY HOSPITAL", "REGIONAL MEDICAL CENTER",
                 "NORTHSIDE CLINIC"]
_MODELS = {"SIEMENS": ["Avanto", "Aera", "Skyra", "Avanto_fit", "Sola", "Vida"],
           "GE": ["SIGNA HDxt", "DISCOVERY MR450", "SIGNA Artist", "SIGNA Premier", "Optima MR450w"],
           "PHILIPS": ["Ingenia", "Achieva", "Ingenia Elition X", "Intera"]}


@dataclass
class ScarSpec:
    """One scar in heart-frame coordinates (see module docstring); evaluated by ``lgeclip.phantom.scar``."""

    pattern: str  # ischaemic | mid-wall | subepicardial | rvip
    territory: str | None  # LAD | RCA | LCx for ischaemic
    centers_deg: list[float]  # angular centre(s) (rvip may have two)
    halfwidth_deg: float
    z_lo: float  # mm from base
    z_hi: float
    tmax: float  # ischaemic/subepicardial transmural extent (0..1); mid-wall/rvip: band half-width
    band_center: float  # mid-wall/rvip band centre depth (0 endo .. 1 epi)
    rough: list[list[float]]  # [k_alpha, k_z, amplitude, phase] harmonics of edge roughness / patchiness
    patchy: float  # 0 = solid; > 0 threshold on the roughness field (non-ischaemic patchiness)
    mvo: bool
    contrast: float  # scar signal / blood signal on PSIR
    hidden: str | None = None  # "apical-cap" | "basal" when no imaged slice shows the scar


@dataclass
class HeartSpec:
    """LV/RV shape. Radii/thickness in mm; harmonics are [k, amplitude, phase_rad] of the endocardial radius."""

    length: float  # base -> endocardial apex
    r_base: float  # endocardial radius at the base
    thickness: float  # mean wall thickness
    endo_harm: list[list[float]]
    thick_harm: list[list[float]]
    alpha_ant: float  # anterior RVIP angle (deg)
    rvip_span: float  # inferior RVIP = alpha_ant + span
    rv_depth: float  # max RV cavity depth at the base (mm)
    rv_skew: float
    twist_deg_per_mm: float
    drift_mm: list[float]  # LV centre drift per slice in the image (row, col) mm
    papillary_deg: list[float]
    papillary_r: float
    fat: float  # epicardial fat thickness scale (mm)
    scale_systole: float = 0.72  # endocardial radius factor at end-systole (cine)


@dataclass
class GeometrySpec:
    """Short-axis stack in the patient frame. Unit vectors are LPS; ``u`` points base -> apex."""

    u: list[float]
    ant: list[float]  # anterior heart direction in the SAX plane
    sep: list[float]  # septal heart direction in the SAX plane
    theta_deg: float  # in-plane rotation of the heart in the image
    base_center: list[float]  # LV centre at the base (z = 0), LPS mm
    spacing: float
    rows: int
    cols: int
    lv_px: list[float]  # LV centre (row, col) at the first slice
    z0: float  # first slice centre, mm from base
    n_slices: int
    order: str  # InstanceNumber order: base-apex | apex-base | shuffled


@dataclass
class BodySpec:
    """Surroundings in heart-frame mm (p_ant, p_sep) and per-patient tissue contrast (PSIR, blood = 1)."""

    center: list[float]
    axes: list[float]
    harm: list[list[float]]
    fat_mm: float
    muscle_mm: float
    lung_l: list[float]  # (p_ant, p_sep, radius)
    lung_r: list[float]
    liver: list[float]
    stomach: list[float]
    aorta: list[float]
    spine: list[float]
    tissue: dict[str, float]
    noise: float
    bias: list[float]
    ghost: float  # ghost amplitude (0 = none)
    streak: bool
    sternal_wires: bool


@dataclass
class PatientSpec:
    """Everything random about one phantom patient."""

    index: int
    seed: int
    patient_id: str
    patient_name: str
    sex: str
    age: int
    birth_date: str
    study_date: str
    study_time: str
    accession: str
    institution: str
    vendor: str
    variant: int
    model: str
    field_strength: float
    inversion_time: float
    lge_performed: bool
    geometry: GeometrySpec
    heart: HeartSpec
    body: BodySpec
    scar: ScarSpec | None
    facts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def slice_z(self) -> np.ndarray:
        """Slice centres (mm from base), base -> apex."""
        g = self.geometry
        return g.z0 + SLICE_MM * np.arange(g.n_slices)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _affine_id(seed: int, index: int, salt: int, digits: int) -> int:
    """Unique-within-cohort pseudo-random number: an affine bijection of ``index`` modulo 10**digits."""
    r = np.random.default_rng([seed, salt])
    mod = 10**digits
    a = int(r.integers(1, mod // 10)) * 10 + int(r.choice([1, 3, 7, 9]))  # odd, not divisible by 5
    b = int(r.integers(0, mod))
    return (a * index + b) % mod


def _harm(rng: np.random.Generator, ks, amp: float) -> list[list[float]]:
    return [[float(k), float(rng.normal(0, amp / k**0.5)), float(rng.uniform(0, 2 * np.pi))] for k in ks]


def _geometry(rng: np.random.Generator, heart: HeartSpec, scar_hidden: str | None) -> GeometrySpec:
    u = _unit(np.array([0.62, -0.45, -0.62]) + rng.normal(0, 0.1, 3))
    v = np.array([0.0, -1.0, 0.25])  # anterior, slightly cranial
    ant = _unit(v - (v @ u) * u)
    sep = np.cross(u, ant)
    if sep[0] > 0:  # septum/RV lies towards the patient's right (-x in LPS)
        sep = -sep
    spacing = float(np.round(rng.uniform(1.3, 2.2), 4))
    fov = rng.uniform(300, 400)
    cols = int(np.clip(8 * round(fov / spacing / 8), 192, 256))
    rows = int(np.clip(8 * round(cols * rng.choice([1.0, 1.0, 0.875, 0.8125, 0.75]) / 8), 192, 256))
    z0 = rng.uniform(4, 11) if scar_hidden != "basal" else rng.uniform(13, 17)
    n_max = int((heart.length - 10 - z0) // SLICE_MM) + 1
    if scar_hidden == "apical-cap":
        n_max = min(n_max, int((heart.length - 12 - z0) // SLICE_MM) + 1)
    n = int(np.clip(rng.integers(6, 11), 3, n_max))
    lv = [rows / 2 + rng.normal(0, 0.07) * rows, cols / 2 + rng.normal(0, 0.07) * cols]
    base = np.array([25.0, -10.0, 20.0]) + rng.normal(0, 12, 3)
    return GeometrySpec(
        u=u.tolist(), ant=ant.tolist(), sep=sep.tolist(), theta_deg=float(rng.normal(0, 18)),
        base_center=base.tolist(), spacing=spacing, rows=rows, cols=cols, lv_px=[float(x) for x in lv],
        z0=float(z0), n_slices=n, order=str(rng.choice(["base-apex", "apex-base", "shuffled"], p=[0.5, 0.3, 0.2])))


def _heart(rng: np.random.Generator, sex: str, dilated: bool) -> HeartSpec:
    r = rng.uniform(21, 27) + (2 if sex == "M" else 0) + (rng.uniform(3, 8) if dilated else 0)
    return HeartSpec(
        length=float(rng.uniform(80, 98) + (6 if dilated else 0)), r_base=float(r),
        thickness=float(rng.uniform(6.5, 10.5) - (1.0 if dilated else 0)),
        endo_harm=_harm(rng, [2, 3, 4], 0.06), thick_harm=_harm(rng, [1, 2, 3], 0.1),
        alpha_ant=float(rng.uniform(32, 58)), rvip_span=float(rng.uniform(100, 130)),
        rv_depth=float(rng.uniform(17, 30)), rv_skew=float(rng.uniform(-0.4, 0.4)),
        twist_deg_per_mm=float(rng.normal(0, 0.08)), drift_mm=rng.normal(0, 1.0, 2).tolist(),
        papillary_deg=[float(rng.normal(300, 12)), float(rng.normal(205, 12))],
        papillary_r=float(rng.uniform(3.0, 5.0)), fat=float(rng.uniform(0.5, 4.0)))


def _body(rng: np.random.Generator, sex: str) -> BodySpec:
    big = rng.uniform(0.9, 1.2)
    t = {"air": 0.0, "lung": rng.uniform(0.03, 0.09), "myo": rng.uniform(-0.06, 0.03), "blood": rng.uniform(0.85, 1.0),
         "fat": rng.uniform(0.8, 1.15), "muscle": rng.uniform(0.15, 0.32), "liver": rng.uniform(0.4, 0.6),
         "fluid": rng.uniform(-0.2, -0.05), "bone": rng.uniform(0.3, 0.45), "marrow": rng.uniform(0.6, 0.9),
         "mediastinum": rng.uniform(0.35, 0.55), "spleen": rng.uniform(0.55, 0.75)}
    return BodySpec(
        center=[float(rng.normal(-50, 6)), float(rng.normal(30, 10))],
        axes=[float(rng.uniform(100, 118) * big), float(rng.uniform(190, 250) * big)],
        harm=_harm(rng, [2, 3, 4, 5], 0.04), fat_mm=float(rng.uniform(5, 22) * (1.2 if sex == "F" else 1.0)),
        muscle_mm=float(rng.uniform(7, 15)),
        lung_l=[float(rng.normal(5, 8)), float(rng.normal(-75, 8)), float(rng.uniform(55, 75))],
        lung_r=[float(rng.normal(15, 10)), float(rng.normal(100, 10)), float(rng.uniform(55, 75))],
        liver=[float(rng.normal(-80, 8)), float(rng.normal(55, 10)), float(rng.uniform(50, 70))],
        stomach=[float(rng.normal(-62, 8)), float(rng.normal(-55, 8)), float(rng.uniform(20, 32))],
        aorta=[float(rng.normal(-68, 5)), float(rng.normal(-12, 6)), float(rng.uniform(9, 13))],
        spine=[float(rng.normal(-100, 5)), float(rng.normal(15, 8)), float(rng.uniform(17, 21))],
        tissue={k: float(v) for k, v in t.items()}, noise=float(rng.uniform(0.02, 0.07)),
        bias=rng.normal(0, 0.25, 4).tolist(), ghost=float(rng.uniform(0.04, 0.12) if rng.random() < 0.15 else 0.0),
        streak=bool(rng.random() < 0.06), sternal_wires=False)


def _phi(rng: np.random.Generator, seed: int, index: int) -> dict:
    sex = str(rng.choice(["M", "F"], p=[0.62, 0.38]))
    first = rng.choice(_FIRST_M if sex == "M" else _FIRST_F)
    age = int(np.clip(rng.normal(58, 14), 19, 89))
    study = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
    birth = study - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
    mrn = _affine_id(seed, index, 11, 8)
    return {"sex": sex, "age": age, "patient_name": f"{rng.choice(_LAST)}^{first}",
            "patient_id": str(rng.choice(["", "H", "MRN"])) + f"{mrn:08d}", "birth_date": birth.strftime("%Y%m%d"),
            "study_date": study.strftime("%Y%m%d"),
            "study_time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
            "accession": f"A{_affine_id(seed, index, 23, 9):09d}"}


def generate_patient(seed: int, index: int, scar_rate: float = 0.4) -> PatientSpec:
    """Draw patient ``index`` of the cohort with ``seed`` (deterministic; independent of other patients)."""
    from lgeclip.phantom.scar import draw_scar, scar_facts

    rng = np.random.default_rng([int(seed), int(index), 0])
    phi = _phi(rng, seed, index)
    lge_performed = bool(rng.random() >= 0.02)
    has_scar = lge_performed and bool(rng.random() < scar_rate)
    pattern = None
    if has_scar:
        pattern = str(rng.choice(["ischaemic", "mid-wall", "subepicardial", "rvip"], p=[0.6, 0.15, 0.15, 0.1]))
    hidden = None
    if has_scar and rng.random() < 0.08:
        hidden = "apical-cap" if pattern == "ischaemic" else "basal"
    dilated = pattern in ("ischaemic", "mid-wall") and rng.random() < 0.4
    heart = _heart(rng, phi["sex"], dilated)
    geom = _geometry(rng, heart, hidden)
    body = _body(rng, phi["sex"])
    z = geom.z0 + SLICE_MM * np.arange(geom.n_slices)
    scar = draw_scar(rng, pattern, heart, z, hidden) if pattern else None
    body.sternal_wires = bool(pattern == "ischaemic" and rng.random() < 0.2)
    vendor = str(rng.choice(VENDORS, p=[0.45, 0.25, 0.30]))
    spec = PatientSpec(
        index=int(index), seed=int(seed), patient_id=phi["patient_id"], patient_name=phi["patient_name"],
        sex=phi["sex"], age=phi["age"], birth_date=phi["birth_date"], study_date=phi["study_date"],
        study_time=phi["study_time"], accession=phi["accession"], institution=str(rng.choice(_INSTITUTIONS)),
        vendor=vendor, variant=int(rng.integers(0, 3)), model=str(rng.choice(_MODELS[vendor])),
        field_strength=float(rng.choice([1.5, 1.5, 3.0])), inversion_time=float(np.round(rng.uniform(250, 350))),
        lge_performed=lge_performed, geometry=geom, heart=heart, body=body, scar=scar)
    vol = 2 / 3 * np.pi * heart.r_base**2 * heart.length / 1000 * 1.25
    ef = {None: rng.uniform(55, 70), "ischaemic": rng.uniform(25, 55), "mid-wall": rng.uniform(30, 58),
          "subepicardial": rng.uniform(45, 65), "rvip": rng.uniform(40, 65)}[pattern]
    spec.facts = {
        "lge": has_scar, "pattern": pattern, **scar_facts(scar, heart), "lvef": float(np.round(ef, 0)),
        "lvedv": float(np.round(vol, 0)), "rv_normal": bool(rng.random() < (0.9 if pattern is None else 0.75)),
        "indication": str(rng.choice(INDICATIONS[pattern])), "age": phi["age"], "sex": phi["sex"],
        "patient_name": phi["patient_name"], "lge_performed": lge_performed}
    return spec
