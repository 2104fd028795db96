"""DICOM scan, series selection, slice ordering, level choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from dicom_factory import AX_IOP, sax_iop, write_image, write_stack
from pydicom.uid import generate_uid

from lgeclip.io.dicom import (
    DEFAULT_RULES_PATH,
    SeriesRules,
    choose_levels,
    group_studies,
    load_rules,
    order_slices,
    read_pixels,
    scan_tree,
    select_lge_series,
)


def test_round_trip_and_bad_files(tmp_path):
    iop = sax_iop()
    sop = write_image(tmp_path / "a" / "IM0001", patient_id="P1", patient_name="Doe^Jane", birth_date="19600101",
                      study_uid="1.2.3", series_uid="1.2.3.4", description="PSIR", series_number=5,
                      instance_number=1, ipp=(1, 2, 3), iop=iop, image_type=("DERIVED", "PRIMARY", "PSIR"),
                      pixels=np.arange(32 * 32).reshape(32, 32) % 500, slope=2.0, intercept=-100.0)
    write_image(tmp_path / "raw.bin", patient_id="P1", patient_name="Doe^Jane", birth_date="19600101",
                study_uid="1.2.3", series_uid="1.2.3.4", description="PSIR", series_number=5, instance_number=2,
                ipp=(1, 2, 11), iop=iop, preamble=False)
    (tmp_path / "notes.txt").write_text("not a dicom file at all")
    good = (tmp_path / "a" / "IM0001").read_bytes()
    (tmp_path / "trunc").write_bytes(good[:300])
    series, skipped = scan_tree(tmp_path)
    assert len(series) == 1 and series[0].n_images == 2  # the preamble-less file is read too
    s = series[0]
    assert s.description == "PSIR" and s.series_number == 5 and "PSIR" in s.image_types
    assert np.allclose(s.orientation, iop, atol=1e-5)
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"notes.txt", "trunc"}
    assert reasons["notes.txt"] == "not a DICOM file"
    img, sp = read_pixels(next(i.path for i in s.instances if i.sop_uid == sop))
    assert img.dtype == np.float32 and sp == (1.5, 1.5)
    assert np.allclose(img, (np.arange(32 * 32).reshape(32, 32) % 500) * 2.0 - 100.0)


def _study(tmp_path, rng, psir_desc, *, mixed=False, psir_type=("DERIVED", "PRIMARY", "PSIR")):
    study = generate_uid()
    kw = dict(patient_id="P9", study_uid=study)
    write_stack(tmp_path, rng, description="localizer", series_number=1, n_slices=3, iop=AX_IOP, **kw)
    write_stack(tmp_path, rng, description="cine_sax", series_number=2, n_slices=8, per_position=20,
                image_type=("ORIGINAL", "PRIMARY", "M"), **kw)
    write_stack(tmp_path, rng, description="MOLLI T1 map", series_number=3, n_slices=3,
                image_type=("DERIVED", "PRIMARY", "T1 MAP"), **kw)
    write_stack(tmp_path, rng, description="LGE_PSIR_4CH", series_number=4, n_slices=1, image_type=psir_type, **kw)
    write_stack(tmp_path, rng, description="DE MAG SAX", series_number=5, n_slices=8,
                image_type=("ORIGINAL", "PRIMARY", "M_IR"), **kw)
    write_stack(tmp_path, rng, description="SS PSIR SAX", series_number=6, n_slices=8, image_type=psir_type, **kw)
    target = write_stack(tmp_path, rng, description=psir_desc, series_number=7, n_slices=9, image_type=psir_type,
                         mixed=mixed, **kw)
    return target


@pytest.mark.parametrize("desc", ["PSIR", "TFL PSIR", "DE_PSIR_SAX", "MDE PSIR", "PSIR_SAX", "LGE_PSIR",
                                  "sa_lge_phase_sensitive"])
def test_select_among_distractors(tmp_path, desc):
    rng = np.random.default_rng(len(desc))
    target = _study(tmp_path, rng, desc)
    series, skipped = scan_tree(tmp_path)
    assert not skipped and len(series) == 7
    chosen, why = select_lge_series(series, load_rules(None))
    assert chosen is not None and chosen.series_uid == target["series_uid"], why
    for word in ("localizer", "cine", "T1 map", "long-axis", "magnitude-only", "single-shot"):
        assert word in why, why


def test_mixed_series_keeps_only_phase_sensitive(tmp_path):
    rng = np.random.default_rng(1)
    target = _study(tmp_path, rng, "LGE SAX", mixed=True, psir_type=("ORIGINAL", "PRIMARY", "R_IR"))
    chosen, why = select_lge_series(scan_tree(tmp_path)[0])
    assert chosen.series_uid == target["series_uid"] and "phase-sensitive" in why
    assert {i.sop_uid for i in chosen.instances} == set(target["sops"])
    ordered, _ = order_slices(chosen)
    assert [i.sop_uid for i in ordered] == target["sops"]
    assert [read_pixels(i.path)[0][0, 0] for i in ordered] == [100 + 10 * k for k in range(9)]


@pytest.mark.parametrize("desc,why", [("SSh MDE", "single-shot"), ("sBTFE_BH_SA", "cine"), ("SmartSurvey", "localizer"),
                                      ("TI_SS_LGE_MOCO", "single-shot"), ("3Pl Loc SSFSE", "localizer"),
                                      ("MOLLI_T1map", "T1 map")])
def test_vendor_distractor_names(tmp_path, desc, why):
    rng = np.random.default_rng(5)
    write_stack(tmp_path, rng, description=desc, patient_id="P", study_uid="1.3", series_number=1, n_slices=8,
                image_type=("ORIGINAL", "PRIMARY", "OTHER"))
    chosen, reason = select_lge_series(scan_tree(tmp_path)[0])
    assert chosen is None and why in reason, reason


def test_no_lge_series(tmp_path):
    rng = np.random.default_rng(2)
    write_stack(tmp_path, rng, description="cine", patient_id="P", study_uid="1.2", series_number=1, n_slices=8)
    write_stack(tmp_path, rng, description="PSIR 3CH", patient_id="P", study_uid="1.2", series_number=2,
                n_slices=1, image_type=("PSIR",))
    chosen, why = select_lge_series(scan_tree(tmp_path)[0])
    assert chosen is None and "no LGE" in why and "long-axis" in why


def test_orientation_decides_long_axis_without_name(tmp_path):
    """A 'PSIR' series whose slices are not parallel (2/3/4-chamber set) is not a short-axis stack."""
    rng = np.random.default_rng(3)
    study, ser = "1.9", generate_uid()
    for k, iop in enumerate([AX_IOP, (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)]):
        write_image(tmp_path / f"f{k}", patient_id="P", patient_name="A^B", birth_date="", study_uid=study,
                    series_uid=ser, description="PSIR", series_number=3, instance_number=k + 1, ipp=(0, 0, k),
                    iop=iop, image_type=("PSIR",))
    chosen, why = select_lge_series(scan_tree(tmp_path)[0])
    assert chosen is None and "not parallel" in why
    # only two positions: not a stack either
    write_stack(tmp_path / "b", rng, description="PSIR", patient_id="P", study_uid="2.9", series_number=1,
                n_slices=2, image_type=("PSIR",))
    chosen, why = select_lge_series(group_studies(scan_tree(tmp_path / "b")[0])["2.9"])
    assert chosen is None and "2 slice position" in why


@pytest.mark.parametrize("reverse", [False, True])
def test_order_slices_shuffled(tmp_path, reverse):
    rng = np.random.default_rng(4)
    t = write_stack(tmp_path, rng, description="PSIR", patient_id="P", study_uid="1.5", series_number=1,
                    n_slices=10, image_type=("PSIR",), reverse_normal=reverse)
    (s,), _ = scan_tree(tmp_path)
    rng.shuffle(s.instances)
    ordered, note = order_slices(s)
    assert [i.sop_uid for i in ordered] == t["sops"], note  # base (written first) comes first


def test_choose_levels():
    assert choose_levels(10, 3) == [(2, "basal"), (5, "mid"), (7, "apical")]
    assert choose_levels(3, 3) == [(0, "basal"), (1, "mid"), (2, "apical")]
    assert choose_levels(12, 12) == [(i, ("basal", "mid", "apical")[i // 4]) for i in range(12)]
    six = choose_levels(12, 6)
    assert len(six) == 6 and [lv for _, lv in six] == ["basal"] * 2 + ["mid"] * 2 + ["apical"] * 2
    assert choose_levels(2, 3) == [(0, "basal"), (1, "apical")]
    assert choose_levels(0, 3) == []


def test_rules_yaml_mirrors_defaults(tmp_path):
    assert load_rules(DEFAULT_RULES_PATH) == SeriesRules()
    d = dataclasses.asdict(SeriesRules())
    d["min_slices"] = 5
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(d))
    assert load_rules(tmp_path / "r.yaml").min_slices == 5
    (tmp_path / "bad.yaml").write_text("min_slice: 5\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_rules(tmp_path / "bad.yaml")
