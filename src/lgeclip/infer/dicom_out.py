"""Results back into PACS as DICOM (``lgeclip predict --dicom-out``): a Comprehensive 3D SR holding a TID 1500
measurement report (P(LGE) per scored slice, each referencing its source image; the patient-level P(LGE), the
call and the model identity; the study's AHA segment scores, each with the segment's standard SNOMED CT finding
site) and a Secondary Capture of the prediction picture, both in the source study.

Both carry new series / instance UIDs. From the source they copy only what DICOM needs to file them in the same
study (Patient's Name and ID, Study Instance UID and the other Study module attributes highdicom carries; the
Type 2 Patient's Birth Date and Sex are written empty). These identifiers live only in the DICOM files: no log
line, CSV or JSON gets them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCHEME = "99LGECLIP"  # private coding scheme for the concepts DICOM has no standard code for
MANUFACTURER = "lgeclip"


def _codes():
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return {
        "p_lge": hd.sr.CodedConcept("P-LGE", SCHEME, "Probability of myocardial late gadolinium enhancement"),
        "lge": hd.sr.CodedConcept("LGE", SCHEME, "Myocardial late gadolinium enhancement"),
        "segment": hd.sr.CodedConcept("LGE-SEG", SCHEME, "Late gadolinium enhancement score of a segment"),
        "unit": codes.UCUM.NoUnits, "yes": codes.SCT.Yes, "no": codes.SCT.No, "procedure": codes.SCT.CardiacMRI,
    }


def segment_site(segment: int):
    """SNOMED CT code of AHA segment 1-16 (CID 3717 "Myocardial Wall Segments", e.g. 4 -> left ventricle basal
    inferior segment), taken by name from pydicom's code dictionary."""
    from pydicom.sr.codedict import codes

    from lgeclip.infer.segments import SEGMENT_NAMES

    if segment not in range(1, 17):
        raise ValueError(f"segment {segment} is not one of the 16 short-axis segments")
    level, wall = SEGMENT_NAMES[segment].split(" ", 1)
    return getattr(codes.SCT, f"LeftVentricle{level.capitalize()}{wall.capitalize()}Segment")


def _blank_birth_and_sex(ds) -> None:
    for kw in ("PatientBirthDate", "PatientSex"):  # Type 2: present, empty
        if kw in ds:
            setattr(ds, kw, "")


def _algorithm(pred: dict):
    """(AlgorithmIdentification, its name): the model identity, recipe name + weights hash."""
    import highdicom as hd

    model = pred.get("model") or {}
    name = f"lgeclip {model.get('recipe', '')}".strip()
    version = str(model.get("model_sha256", "unknown"))[:16]
    return hd.sr.AlgorithmIdentification(name=name, version=version), name


def structured_report(pred: dict, sources: list, series_number: int = 9901):
    """The SR dataset of one study: ``pred`` from ``predict_study``, ``sources`` the source datasets of its scored
    slices in ``pred["slices"]`` order (None where a slice has no source)."""
    import highdicom as hd

    c = _codes()
    algorithm, name = _algorithm(pred)
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="lgeclip", model_name=name))
    groups = []
    evidence = [ds for ds in sources if ds is not None]
    for s, ds in zip(pred["slices"], sources, strict=True):
        if s["p_lge"] is None or ds is None:
            continue
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"slice {s['index']} ({s['level']})"),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=c["p_lge"], value=float(s["p_lge"]), unit=c["unit"],
                                            algorithm_id=algorithm)],
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)]))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"patient ({pred['aggregation']} over {pred['patient_slices']})"),
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=c["p_lge"], value=float(pred["p_lge"]), unit=c["unit"],
                                        algorithm_id=algorithm)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=c["lge"], value=c["yes"] if pred["lge"]
                                                             else c["no"])]))
    scored = [r for r in pred.get("segments") or [] if r.get("score") is not None]
    if scored:  # the study's 16-segment table: one measurement per segment that a slice answered for
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"AHA segments ({pred.get('localisation_method', 'occlude')})"),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=c["segment"], value=float(r["score"]), unit=c["unit"],
                                            algorithm_id=algorithm,
                                            finding_sites=[hd.sr.FindingSite(segment_site(int(r["segment"])))])
                          for r in scored]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=c["procedure"], imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="lgeclip P(LGE) report")
    from pydicom.dataset import Dataset

    scheme = Dataset()  # declare the private coding scheme (SOP Common: Coding Scheme Identification)
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "lgeclip concepts"
    scheme.CodingSchemeResponsibleOrganization = "lgeclip project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    _blank_birth_and_sex(sr)
    return sr


def secondary_capture(png: Path, reference, series_number: int = 9902):
    """A Secondary Capture (RGB) of the prediction picture ``png`` in the study of ``reference`` (a source dataset)."""
    import highdicom as hd
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"), series_description="lgeclip prediction")
    sc.BodyPartExamined = "HEART"  # an unpaired body part: General Series' Laterality (Type 2C) is then not needed
    _blank_birth_and_sex(sc)
    return sc


def write_dicom_results(pred: dict, source_paths: list, png: Path | None, out_dir: Path) -> list[Path]:
    """Write ``lgeclip_sr.dcm`` (and ``lgeclip_sc.dcm`` when ``png`` exists) into ``out_dir``; returns their paths.
    ``source_paths``: the DICOM file of each slice in ``pred["slices"]`` order."""
    import pydicom

    sources = [pydicom.dcmread(p, stop_before_pixels=True) if p else None for p in source_paths]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    sr = structured_report(pred, sources)
    sr.save_as(out_dir / "lgeclip_sr.dcm", enforce_file_format=True)
    written.append(out_dir / "lgeclip_sr.dcm")
    if png is not None and Path(png).is_file():
        ref = next(ds for ds in sources if ds is not None)
        sc = secondary_capture(Path(png), ref)
        sc.save_as(out_dir / "lgeclip_sc.dcm", enforce_file_format=True)
        written.append(out_dir / "lgeclip_sc.dcm")
    return written
