"""DICOM ingest: bad inputs land in excluded.csv, the rest ingests; no PHI in any output."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from dicom_factory import write_stack

from lgeclip.io.cohort import load_slice, patient_key, read_excluded, read_manifest
from lgeclip.io.ingest import ingest_dicom
from lgeclip.io.splits import read_splits

NAME, PID, DOB = "Quixley^Marguerite", "MRN-837261", "19531127"
POS = ("CLINICAL INDICATION: Chest pain.\nFINDINGS: Normal LV size. There is transmural late gadolinium enhancement "
       "of the mid inferior wall. Ms Quixley also has subendocardial LGE in the basal septum.\n"
       "IMPRESSION: Inferior infarction with transmural LGE.")
NEG = "FINDINGS: Normal biventricular function. No late gadolinium enhancement.\nIMPRESSION: No myocardial scar."
NO_LGE = "FINDINGS: Normal biventricular size and function.\nIMPRESSION: Normal study."


def _cohort(root, rng):
    """Patients: A (positive, PHI planted), B (negative, one truncated slice), C (cine only), D (no report),
    E (report without LGE), F (no PixelSpacing); plus junk files."""
    dic = root / "dicom"
    pts = {"A": PID, "B": "PT-B-5521", "C": "PT-C-1", "D": "PT-D-2", "E": "PT-E-3", "F": "PT-F-4"}
    out = {}
    for tag, pid in pts.items():
        kw = dict(patient_id=pid, patient_name=NAME if tag == "A" else f"Other^{tag}x", birth_date=DOB,
                  study_uid=f"1.2.826.0.1.{ord(tag)}")
        write_stack(dic / tag.lower(), rng, description="localizer", series_number=1, n_slices=3,
                    iop=(1, 0, 0, 0, 1, 0), **kw)
        if tag == "C":
            write_stack(dic / tag.lower(), rng, description="SAX cine", series_number=2, n_slices=8,
                        per_position=12, **kw)
            continue
        out[tag] = write_stack(dic / tag.lower(), rng, description="DE_PSIR_SAX", series_number=3, n_slices=10,
                               image_type=("DERIVED", "PRIMARY", "PSIR"),
                               spacing=None if tag == "F" else (1.4, 1.4), **kw)
    # truncate pixel data of B's 5th slice (header still readable)
    sop = out["B"]["sops"][4]
    path = next(p for p in (dic / "b").iterdir() if sop.encode() in p.read_bytes())
    path.write_bytes(path.read_bytes()[:-1500])
    (dic / "README").write_text(f"exported for {NAME} {PID}")
    (dic / "a" / "junk.dcm").write_bytes(b"\x08\x00" + b"\x00" * 50)
    with open(root / "reports.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "accession", "report_text"])
        w.writerow([PID, "ACC1", f"Patient: Quixley, Marguerite  DOB: 27/11/1953  MRN: {PID}\n" + POS])
        w.writerow(["PT-B-5521", "ACC2", NEG])
        w.writerow(["PT-C-1", "ACC3", POS.replace("Ms Quixley", "The patient")])
        w.writerow(["PT-E-3", "ACC4", NO_LGE])
        w.writerow(["PT-F-4", "ACC5", NEG])
    return pts, out


def test_bad_inputs_and_phi(tmp_path, capfd):
    rng = np.random.default_rng(0)
    pts, stacks = _cohort(tmp_path, rng)
    out = tmp_path / "cohort"
    s = ingest_dicom(tmp_path / "dicom", tmp_path / "reports.csv", out)
    assert s["n_studies"] == 6 and s["n_ingested"] == 2 and s["n_slices"] == 6
    recs = read_manifest(out)
    keys = {patient_key(pts[t]): t for t in pts}
    got = {keys[r.patient_key] for r in recs}
    assert got == {"A", "B"}
    a = [r for r in recs if keys[r.patient_key] == "A"]
    b = [r for r in recs if keys[r.patient_key] == "B"]
    assert [r.level for r in a] == ["basal", "mid", "apical"] and all(r.label == "positive" for r in a)
    assert all(r.label == "negative" for r in b) and b[0].n_slices == 9  # truncated slice dropped
    assert not any("Quixley" in x for x in a[0].sentences) and any("inferior" in x for x in a[0].sentences)
    # pixel values encode base-first order: slice k holds 100 + 10 k
    for r in a:
        z = load_slice(out / r.image_path)
        assert z["image"][0, 0] == 100 + 10 * r.slice_index and np.allclose(z["spacing_mm"], 1.4)
    exc = read_excluded(out)
    by_tag = {keys[k]: why for k, why in exc if k in keys and not why.startswith("slice dropped")}
    assert "no LGE short-axis series" in by_tag["C"]
    assert by_tag["D"] == "no report for this patient"
    assert "no LGE sentence" in by_tag["E"]
    assert "PixelSpacing" in by_tag["F"]
    assert any(k == patient_key(pts["B"]) and "unreadable pixel data" in why for k, why in exc)
    file_rows = [why for k, why in exc if k.startswith("file-")]
    assert file_rows == ["not a DICOM file", "not a DICOM file"], exc  # README + junk.dcm
    # privacy: nothing under the cohort folder and nothing printed carries the planted PHI
    printed = "".join(capfd.readouterr())
    needles = [PID, "Quixley", "Marguerite", DOB, "27/11/1953", "1953-11-27", "PT-B-5521", "Other^"]
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not any(n.encode() in data for n in needles), p
            if p.suffix == ".npz":
                assert set(load_slice(p)) <= {"image", "spacing_mm"}
    assert not any(n in printed for n in needles)
    summary = json.loads((out / "cohort.json").read_text())
    assert summary["n_ingested"] == 2 and summary["timings_s"]["total"] > 0
    # ingest wrote the cohort's one patient split: the manifest's (pseudonymous) patients, labels from the reports
    splits = read_splits(out)
    assert {k: v["label"] for k, v in splits["patients"].items()} == {r.patient_key: r.label for r in recs}
    assert summary["splits"]["file"] == str(out / "splits.json") and splits["n_folds"] == 5


@pytest.mark.parametrize("n_levels", [1, 5])
def test_levels_option(tmp_path, n_levels):
    rng = np.random.default_rng(1)
    dic = tmp_path / "dicom"
    write_stack(dic, rng, patient_id="X1", study_uid="1.2.3.1", description="PSIR", series_number=9, n_slices=10,
                image_type=("PSIR",))
    (tmp_path / "r.csv").write_text("patient_id,accession,report_text\nX1,1,\"" + NEG + "\"\n")
    ingest_dicom(dic, tmp_path / "r.csv", tmp_path / "c", n_levels=n_levels)
    recs = read_manifest(tmp_path / "c")
    assert len(recs) == n_levels and all(r.n_slices == 10 for r in recs)
    if n_levels == 1:
        assert recs[0].level == "mid"


def test_phantom_round_trip(tmp_path):
    """Phantom studies: the selected series is the truth's PSIR series and slice order matches truth order."""
    phantom = pytest.importorskip("lgeclip.phantom")
    if not hasattr(phantom, "generate_cohort"):
        pytest.skip("lgeclip.phantom.generate_cohort not available yet")
    from lgeclip.io.dicom import group_studies, order_slices, scan_tree, select_lge_series

    ph = tmp_path / "ph"
    phantom.generate_cohort(ph, patients=6, seed=3, workers=1)
    truths = {d.name: json.loads((d / "truth.json").read_text()) for d in (ph / "truth").iterdir()}
    series, _ = scan_tree(ph / "dicom")
    studies = group_studies(series)
    assert len(studies) == len(truths) == 6
    for ss in studies.values():
        t = truths[ss[0].patient_id]
        chosen, why = select_lge_series(ss)
        assert chosen is not None and chosen.series_uid == t["psir_series_uid"], why
        ordered, note = order_slices(chosen)
        assert [i.sop_uid for i in ordered] == [s["sop_uid"] for s in t["slices"]], note
    out = tmp_path / "cohort"
    s = ingest_dicom(ph / "dicom", ph / "reports.csv", out, truth=ph / "truth")
    recs = read_manifest(out)
    assert s["n_ingested"] >= 5 and all(r.has_masks for r in recs)
    by_key = {patient_key(pid): t for pid, t in truths.items()}
    for r in recs:
        t = by_key[r.patient_key]
        assert r.scar_truth == int(t["slices"][r.slice_index]["has_scar"])
        assert r.scar_pattern == (t["scar_pattern"] or "")  # the patient's pattern, for the pattern question
        z = load_slice(out / r.image_path)
        assert z["myocardium"].shape == z["image"].shape and z["myocardium"].any()
        assert np.allclose(z["rvip"], t["slices"][r.slice_index]["rvip_px"])


@pytest.mark.slow
def test_series_selection_on_a_200_patient_phantom(tmp_path):
    """The issue's acceptance check: on 200 phantom patients the PSIR series chosen from DICOM tags is the
    generator's truth for every study that has one, and no series is chosen where LGE was not performed."""
    from lgeclip.io.dicom import group_studies, scan_tree, select_lge_series
    from lgeclip.phantom import generate_cohort

    ph = tmp_path / "ph200"
    generate_cohort(ph, patients=200, seed=0, workers=2)
    truths = {d.name: json.loads((d / "truth.json").read_text()) for d in (ph / "truth").iterdir()}
    series, skipped = scan_tree(ph / "dicom")
    studies = group_studies(series)
    assert len(studies) == len(truths) == 200 and not skipped
    n_psir = 0
    for ss in studies.values():
        t = truths[ss[0].patient_id]
        chosen, why = select_lge_series(ss)
        if t.get("psir_series_uid") is None:
            assert chosen is None, why
            continue
        n_psir += 1
        assert chosen is not None and chosen.series_uid == t["psir_series_uid"], why
    assert n_psir >= 190  # LGE is "not performed" in ~2 % of phantom studies
