"""Report reading: sections, sentence splitting, LGE sentence extraction and NegEx-style LGE status."""

from __future__ import annotations

import pytest

from lgeclip.report import extract_lge_sentences, lge_status, sections, sentence_status, split_sentences

# (report text, expected LGE sentences, expected status). Texts without headers are read whole (as findings).
CASES = [
    # --- positives -----------------------------------------------------------------------------------------------
    ("There is subendocardial (<50%) late gadolinium enhancement of the basal to mid inferior wall.",
     ["There is subendocardial (<50%) late gadolinium enhancement of the basal to mid inferior wall."], "positive"),
    ("Mid-wall septal fibrosis, typical of DCM.", ["Mid-wall septal fibrosis, typical of DCM."], "positive"),
    ("Transmural infarction of the mid anterior wall with microvascular obstruction.",
     ["Transmural infarction of the mid anterior wall with microvascular obstruction."], "positive"),
    ("RV insertion point LGE, a non-specific finding.",
     ["RV insertion point LGE, a non-specific finding."], "positive"),
    ("Subepicardial enhancement of the basal inferolateral wall, in keeping with myocarditis.",
     ["Subepicardial enhancement of the basal inferolateral wall, in keeping with myocarditis."], "positive"),
    ("Delayed hyperenhancement in the apical septum.", ["Delayed hyperenhancement in the apical septum."], "positive"),
    ("LGE: subendocardial scar, basal inferior wall.", ["LGE: subendocardial scar, basal inferior wall."], "positive"),
    ("Findings: No thrombus. Subendocardial LGE in the inferior wall.",
     ["Subendocardial LGE in the inferior wall."], "positive"),
    ("No LV thrombus; subendocardial LGE in the inferior wall.",
     ["No LV thrombus; subendocardial LGE in the inferior wall."], "positive"),
    ("No LGE in the lateral wall but transmural scar in the inferior wall.",
     ["No LGE in the lateral wall but transmural scar in the inferior wall."], "positive"),
    ("Mid-wall LGE in the septum, not typical of infarction.",
     ["Mid-wall LGE in the septum, not typical of infarction."], "positive"),
    ("Infarct size 12% of LV mass.", ["Infarct size 12% of LV mass."], "positive"),
    ("LGE imaging demonstrates a transmural infarct of the basal anterior wall.",
     ["LGE imaging demonstrates a transmural infarct of the basal anterior wall."], "positive"),
    ("There is microvascular obstruction in the anterior wall.",
     ["There is microvascular obstruction in the anterior wall."], "positive"),
    ("Probable subendocardial infarct of the inferior wall.",
     ["Probable subendocardial infarct of the inferior wall."], "positive"),
    # --- negatives ----------------------------------------------------------------------------------------------
    ("No myocardial late gadolinium enhancement.", ["No myocardial late gadolinium enhancement."], "negative"),
    ("Normal LV size and function with no LGE.", ["Normal LV size and function with no LGE."], "negative"),
    ("No LGE to suggest infarction or infiltration.", ["No LGE to suggest infarction or infiltration."], "negative"),
    ("There is no evidence of myocardial scar or infiltration.",
     ["There is no evidence of myocardial scar or infiltration."], "negative"),
    ("Late gadolinium enhancement was not seen.", ["Late gadolinium enhancement was not seen."], "negative"),
    ("LGE: none.", ["LGE: none."], "negative"),
    ("Absence of late gadolinium enhancement.", ["Absence of late gadolinium enhancement."], "negative"),
    ("Myocardium free of scar.", ["Myocardium free of scar."], "negative"),
    ("LGE imaging was negative for infarction.", ["LGE imaging was negative for infarction."], "negative"),
    ("Late gadolinium enhancement imaging was unremarkable.",
     ["Late gadolinium enhancement imaging was unremarkable."], "negative"),
    ("No definite LGE.", ["No definite LGE."], "negative"),
    ("There isn't any delayed enhancement.", ["There isn't any delayed enhancement."], "negative"),
    ("No regional wall motion abnormality, oedema, infiltration or late gadolinium enhancement to suggest scar.",
     ["No regional wall motion abnormality, oedema, infiltration or late gadolinium enhancement to suggest scar."],
     "negative"),
    ("Indication: prior inferior myocardial infarction.\nFindings: Normal LV size. LVEF 55.5%. No LGE.\n"
     "Impression: Normal study.", ["No LGE."], "negative"),
    ("INDICATION: ?scar. Technique: LGE imaging 10 min after gadolinium.\nFINDINGS\nLVEF 0.55. No scar.",
     ["No scar."], "negative"),
    ("Clinical history: known infarct.\nFindings: no LGE.\nConclusion: no evidence of infarction.",
     ["no LGE.", "no evidence of infarction."], "negative"),
    ("Findings: Equivocal enhancement at the RV insertion point. No definite scar.",
     ["Equivocal enhancement at the RV insertion point.", "No definite scar."], "negative"),
    ("There is no LV thrombus and subendocardial LGE is seen in the inferior wall.",
     ["There is no LV thrombus and subendocardial LGE is seen in the inferior wall."], "positive"),
    ("LGE, oedema and infiltration are absent.", ["LGE, oedema and infiltration are absent."], "negative"),
    ("No oedema or LGE is seen.", ["No oedema or LGE is seen."], "negative"),
    ("Contrast-enhanced MRA normal. Pericardial LGE consistent with pericarditis; no myocardial LGE.",
     ["Pericardial LGE consistent with pericarditis; no myocardial LGE."], "negative"),
    # --- unknown ------------------------------------------------------------------------------------------------
    ("LGE not performed.", [], "unknown"),
    ("Post-contrast imaging not acquired.", [], "unknown"),
    ("LGE images non-diagnostic.", [], "unknown"),
    ("Scar could not be assessed as no contrast was given.", [], "unknown"),
    ("Normal LV size and function. No pericardial effusion.", [], "unknown"),
    ("Indication: prior myocardial infarction. Assess scar.\nFindings: LVEF 45.2%. Normal RV.", [], "unknown"),
    ("Possible subtle LGE in the inferior wall, likely artefact.",
     ["Possible subtle LGE in the inferior wall, likely artefact."], "unknown"),
    ("Focal LGE cannot be excluded.", ["Focal LGE cannot be excluded."], "unknown"),
    ("Enhancement at the inferior RV insertion point, artefact vs true LGE.",
     ["Enhancement at the inferior RV insertion point, artefact vs true LGE."], "unknown"),
    ("There is pericardial enhancement consistent with pericarditis.", [], "unknown"),
    ("Technique: gadolinium was administered.\nFindings: Normal LV.", [], "unknown"),
    ("LGE imaging was performed 10 minutes after contrast. LV normal.", [], "unknown"),
    ("Elevated ECV, consistent with diffuse interstitial fibrosis.", [], "unknown"),
    ("No MVO.", ["No MVO."], "unknown"),
    # --- deduplication and order --------------------------------------------------------------------------------
    ("Findings: No LGE. Normal RV.\nImpression: No LGE.\nComment: Transmural scar of the anterior wall.",
     ["No LGE."], "negative"),
]


@pytest.mark.parametrize(("text", "sentences", "status"), CASES, ids=[c[0][:48] for c in CASES])
def test_extraction_and_status(text, sentences, status):
    assert extract_lge_sentences(text) == sentences
    assert lge_status(text) == status


@pytest.mark.parametrize(("sentence", "status"), [
    ("Subendocardial LGE in the inferior wall.", "positive"),
    ("No LGE.", "negative"),
    ("Possible LGE.", "uncertain"),
    ("LGE not performed.", "unavailable"),
    ("No microvascular obstruction.", "mentioned"),
    ("No pericardial effusion.", None),
    ("Sternotomy scar noted.", None),
])
def test_sentence_status(sentence, status):
    assert sentence_status(sentence) == status


def test_sections_header_styles():
    text = ("Patient: Jane Doe  DOB: 01/02/1960\n"
            "INDICATION: chest pain.\nClinical history\nHypertension. History of smoking.\n"
            "TECHNIQUE\nCine and LGE.\nFindings: LV normal.\nMore findings.\n"
            "Conclusions\nNormal study.\nSummary: nothing else.\nComment: call me.")
    assert sections(text) == {
        "other": "Jane Doe  DOB: 01/02/1960\ncall me.",
        "indication": "chest pain.",
        "history": "Hypertension. History of smoking.",
        "technique": "Cine and LGE.",
        "findings": "LV normal.\nMore findings.",
        "impression": "Normal study.\nnothing else.",
    }


def test_sections_inline_and_false_headers():
    text = "Reason for study: ?MI. Findings: History of MI is noted. Findings consistent with scar.\nIMPRESSION Scar."
    assert sections(text) == {
        "indication": "?MI.",
        "findings": "History of MI is noted. Findings consistent with scar.",
        "impression": "Scar.",
    }
    assert sections("No headers here. Just text.") == {"other": "No headers here. Just text."}


@pytest.mark.parametrize(("text", "expected"), [
    ("Scar approx. 50% transmural. Next.", ["Scar approx. 50% transmural.", "Next."]),
    ("LVEF 55.5%. RV normal.", ["LVEF 55.5%.", "RV normal."]),
    ("LVEF 0.55 and 55.5 % by volumes. Done.", ["LVEF 0.55 and 55.5 % by volumes.", "Done."]),
    ("Patterns e.g. DCM vs. HCM, i.e. non-ischaemic. Fine.",
     ["Patterns e.g. DCM vs. HCM, i.e. non-ischaemic.", "Fine."]),
    ("Reported by Dr. J. Smith. See ref. no. 3 incl. LGE. End.",
     ["Reported by Dr. J. Smith.", "See ref. no. 3 incl. LGE.", "End."]),
    ("1. Normal LV. 2. No LGE.\n3) Normal RV", ["Normal LV.", "No LGE.", "Normal RV"]),
    ("- Normal LV\n- No LGE\n* Small effusion\n\u2022 Trivial MR.",
     ["Normal LV", "No LGE", "Small effusion", "Trivial MR."]),
    ("There is subendocardial late gadolinium\nenhancement of the inferior wall.\nNo MVO.",
     ["There is subendocardial late gadolinium enhancement of the inferior wall.", "No MVO."]),
    ("Normal LV size\nNo LGE", ["Normal LV size", "No LGE"]),
    ("Is it scar? Probably! Yes.", ["Is it scar?", "Probably!", "Yes."]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected
