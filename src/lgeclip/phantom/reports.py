"""Phantom CMR report text: varied free-text reports written from a patient's scar facts.

`write_report(facts, rng)` is deterministic given the generator state. Reports carry sections (indication /
history, technique, findings, impression, sometimes a comment) with varied header styles and order, an optional
PHI header line (fake name, DOB-like date, MRN) as real reports do, and varied clinical wording. They are built to
round-trip with `lgeclip.report`: `lge_status` is "positive" iff ``facts["lge"]`` ("unknown" when LGE was not
performed) and the LGE sentences name the scar's AHA walls and levels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PATTERNS", "TRANSMURALITY", "describe_segments", "segment_words", "write_report"]

PATTERNS = ("ischaemic", "mid-wall", "subepicardial", "rvip")
TRANSMURALITY = ("subendocardial", "<50%", ">50%", "transmural", "mid-wall", "subepicardial")
_LEVELS = ("basal", "mid", "apical")
_BASAL_MID_WALLS = ("anterior", "anteroseptal", "inferoseptal", "inferior", "inferolateral", "anterolateral")
_APICAL_WALLS = ("anterior", "septal", "inferior", "lateral")


def segment_words(segment: int) -> tuple[str, str]:
    """AHA segment number (1..17) -> (level, wall) words, e.g. 4 -> ("basal", "inferior"), 17 -> ("apex", "apex")."""
    if not 1 <= int(segment) <= 17:
        raise ValueError(f"AHA segment must be 1..17, got {segment!r}")
    s = int(segment) - 1
    if s < 12:
        return _LEVELS[s // 6], _BASAL_MID_WALLS[s % 6]
    if s < 16:
        return "apical", _APICAL_WALLS[s - 12]
    return "apex", "apex"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _levels_phrase(levels: list[str], rng: np.random.Generator) -> str:
    order = [lv for lv in _LEVELS if lv in levels]
    if len(order) == 3:
        return str(rng.choice(["basal to apical", "basal, mid and apical"]))
    if order == ["basal", "mid"]:
        return str(rng.choice(["basal and mid", "basal to mid"]))
    if order == ["mid", "apical"]:
        return str(rng.choice(["mid and apical", "mid to apical"]))
    return _join(order)


def describe_segments(segments: list[int], rng: np.random.Generator) -> str:
    """Segments in words: [4, 10] -> "the basal and mid inferior wall"; walls with the same levels are merged."""
    by_wall: dict[str, list[str]] = {}
    apex = False
    for seg in sorted({int(s) for s in segments}):
        level, wall = segment_words(seg)
        if wall == "apex":
            apex = True
        else:
            by_wall.setdefault(wall, []).append(level)
    groups: dict[tuple[str, ...], list[str]] = {}
    for wall, levels in by_wall.items():
        groups.setdefault(tuple(levels), []).append(wall)
    parts = []
    for levels, walls in groups.items():
        noun = "walls" if len(walls) > 1 else ("segment" if len(levels) == 1 and rng.random() < 0.3 else "wall")
        parts.append(f"the {_levels_phrase(list(levels), rng)} {_join(walls)} {noun}")
    if apex:
        parts.append(str(rng.choice(["the apex", "the apical cap", "the true apex"])))
    return _join(parts) if parts else "the left ventricle"


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sex_words(sex: str, rng: np.random.Generator) -> str:
    return _pick(rng, ["man", "male", "gentleman"] if sex == "M" else ["woman", "female", "lady"])


def _phi(facts: dict, rng: np.random.Generator) -> str:
    name = facts.get("patient_name") or "Anon Patient"
    year = 2024 - int(facts.get("age", 60)) - int(rng.integers(0, 2))
    dob = f"{int(rng.integers(1, 29)):02d}/{int(rng.integers(1, 13)):02d}/{year}"
    mrn = "".join(str(d) for d in rng.integers(0, 10, size=8))
    return _pick(rng, [
        f"Patient: {name}    DOB: {dob}    MRN: {mrn}",
        f"Name: {name.upper()}  Date of birth: {dob}",
        f"CARDIOVASCULAR MAGNETIC RESONANCE REPORT\nPatient name: {name} (DOB {dob}), hospital no. {mrn}",
        f"Patient: {name}, {facts.get('age', '')} y.o., MRN {mrn}",
    ])


_INDICATION = {
    "chest pain": [
        "Chest pain, troponin negative. ?Ischaemia.", "Atypical chest pain. Exclude structural heart disease.",
        "Recurrent chest pain with unobstructed coronaries (MINOCA?). Assess for infarction or myocarditis.",
    ],
    "suspected myocarditis": [
        "Suspected myocarditis following viral illness.", "Raised troponin, ?myocarditis vs infarct.",
        "Query myocarditis. Assess for oedema and LGE.",
    ],
    "prior myocardial infarction": [
        "Prior myocardial infarction. Assess scar burden and viability.",
        "Previous STEMI treated with primary PCI. Infarct size?",
        "Known ischaemic heart disease with prior infarction, for viability assessment.",
    ],
    "cardiomyopathy": [
        "Dilated cardiomyopathy, ? aetiology. Assess for fibrosis.", "Impaired LV function on echo.",
        "Cardiomyopathy work-up; ischaemic vs non-ischaemic.",
    ],
    "ventricular tachycardia": [
        "Ventricular tachycardia. Look for scar substrate.", "Sustained VT; exclude arrhythmogenic substrate or scar.",
        "Palpitations and NSVT.",
    ],
}
_HISTORY = ["Hypertension, type 2 diabetes.", "Ex-smoker. Hypercholesterolaemia.", "Previous PCI to the RCA (2019).",
            "No significant past medical history.", "Family history of sudden cardiac death.",
            "Known coronary artery disease; prior myocardial infarction.", "Asthma. No known cardiac history.",
            "Recent flu-like illness.", "Paroxysmal AF on apixaban.", "Chronic kidney disease stage 3 (eGFR 48)."]
_HEADERS = {
    "indication": ["Indication:", "INDICATION:", "Clinical indication:", "Reason for study:", "INDICATION"],
    "history": ["History:", "Clinical history:", "CLINICAL HISTORY", "Clinical details:", "Background:"],
    "technique": ["Technique:", "TECHNIQUE:", "Protocol:", "TECHNIQUE", "Imaging protocol:"],
    "findings": ["Findings:", "FINDINGS:", "FINDINGS", "CMR findings:", "Results:"],
    "impression": [
        "Impression:", "IMPRESSION:", "Conclusion:", "CONCLUSIONS", "Summary:", "Conclusion(s):", "Opinion:",
    ],
    "other": ["Comment:", "Comments:", "COMMENT"],
}


def _technique(facts: dict, rng: np.random.Generator) -> str:
    field = _pick(rng, ["1.5T", "3T", "1.5 T"])
    agent = _pick(rng, ["gadobutrol", "gadoterate meglumine", "Gadovist", "Dotarem"])
    dose = _pick(rng, ["0.1", "0.15", "0.2"])
    base = _pick(rng, [
        f"Cine SSFP imaging in short-axis and long-axis planes at {field}.",
        f"{field} scanner. Standard cine, T1 and T2 mapping protocol.",
        f"Cine imaging (SSFP), native T1 (MOLLI) and T2 mapping on a {field} system.",
    ])
    if not facts.get("lge_performed", True):
        return base + " " + _pick(rng, [
            "Gadolinium was not administered (patient declined).",
            "No contrast was given due to poor renal function.",
            "Contrast-enhanced imaging was omitted at the patient's request.",
        ])
    return base + " " + _pick(rng, [
        f"Late gadolinium enhancement imaging (PSIR) 10 minutes after {dose} mmol/kg {agent}.",
        f"LGE images were acquired 8-12 min after {agent} ({dose} mmol/kg), incl. PSIR and magnitude reconstructions.",
        f"{agent.capitalize()} {dose} mmol/kg was administered; delayed enhancement imaging was performed.",
        "Post-contrast LGE imaging (approx. 10 min) and post-contrast T1 mapping for ECV.",
    ])


def _lv(facts: dict, rng: np.random.Generator) -> str:
    ef, edv = float(facts["lvef"]), float(facts["lvedv"])
    func = ("normal" if ef >= 55 else "mildly impaired" if ef >= 45 else "moderately impaired" if ef >= 35
            else "severely impaired")
    size = "dilated" if edv > 210 else "normal in size"
    return _pick(rng, [
        f"The LV is {size} (LVEDV {edv:.0f} mL) with {func} systolic function, LVEF {ef:.1f}%.",
        f"LV end-diastolic volume {edv:.1f} mL. LVEF {ef:.1f} %, i.e. {func} systolic function.",
        f"Left ventricle: {size}, EDV {edv:.0f} mL; ejection fraction {ef:.1f}% ({func}).",
        f"{'Normal' if size.startswith('normal') else 'Dilated'} LV with {func} systolic function (EF {ef / 100:.2f}).",
        f"The left ventricle is {size}. Global systolic function is {func} with an EF of approx. {ef:.0f}%.",
    ])


def _rv(facts: dict, rng: np.random.Generator) -> str:
    if facts.get("rv_normal", True):
        return _pick(rng, ["Normal RV size and function.", "The RV is normal in size with preserved systolic function.",
                           "Right ventricle: normal volumes, RVEF 58%."])
    return _pick(rng, ["The RV is dilated (RVEDV 215 mL) with impaired function (RVEF 38 %).",
                       "Mildly dilated RV with reduced systolic function.", "RV impaired, RVEF 41%."])


_OTHER = [
    ["No significant valvular disease.", "Mild mitral regurgitation.", "Trileaflet aortic valve, no stenosis.",
     "Trivial tricuspid regurgitation."],
    ["Normal atrial sizes.", "Mild left atrial dilatation (LA area 27 cm2).", "Biatrial size is normal."],
    ["No pericardial effusion.", "Small pericardial effusion, no tamponade.", "Pericardium normal; no pericardial "
     "enhancement.", "Normal pericardium."],
    ["No LV thrombus.", "No intracardiac thrombus is seen.", "No thrombus."],
    ["No significant extracardiac findings.", "Incidental small hiatus hernia.", "Small bilateral pleural effusions."],
]


def _mapping(facts: dict, rng: np.random.Generator) -> str:
    myo = facts.get("pattern") == "subepicardial" and facts.get("lge")
    t1 = rng.uniform(1060, 1140) if myo else rng.uniform(950, 1040)
    t2 = rng.uniform(56, 64) if myo else rng.uniform(44, 52)
    tail = ", in keeping with myocardial oedema" if myo else ""
    return _pick(rng, [
        f"Native T1 {t1:.0f} ms and T2 {t2:.0f} ms{tail}.",
        f"T1 mapping: {t1:.0f} ms (local normal range 950-1050 ms); T2 {t2:.1f} ms{tail}.",
        f"Mean native myocardial T1 was {t1:.0f} ms, T2 {t2:.0f} ms{tail}.",
    ])


_POS_ISCH = [
    "There is {tm} late gadolinium enhancement of {loc}, in keeping with previous myocardial infarction.",
    "{Tm} LGE is seen in {loc}, consistent with prior infarction.",
    "Late gadolinium enhancement imaging demonstrates a {tm} infarct involving {loc}.",
    "{Tm} scar in {loc} (coronary artery territory pattern).",
    "Delayed enhancement: {tm} hyperenhancement of {loc}.",
    "Infarct pattern LGE, {tm}, affecting {loc}.",
    "There is an area of {tm} myocardial scar in {loc}.",
    "{Tm} delayed hyperenhancement of {loc}, typical of infarction.",
    "LGE: {tm} enhancement involving {loc}.",
    "Myocardial infarction of {loc} with {tm} late enhancement.",
    "A {tm} infarct is present in {loc}.",
]
_POS_NONISCH = [
    "There is {tm} late gadolinium enhancement in {loc}, a non-ischaemic pattern.",
    "{Tm} LGE is present in {loc}.",
    "Patchy {tm} fibrosis of {loc}, typical of a non-ischaemic cardiomyopathy.",
    "{Tm} hyperenhancement of {loc} in a non-coronary distribution.",
    "Late gadolinium enhancement shows {tm} scar in {loc}.",
    "Linear {tm} enhancement of {loc}.",
    "Non-ischaemic {tm} LGE affecting {loc}.",
    "{Tm} delayed enhancement involving {loc}.",
    "Focal {tm} fibrosis within {loc}.",
    "There is {tm} myocardial LGE of {loc}.",
]
_POS_RVIP = [
    "Focal LGE at the {which} RV insertion point{s}{loc}.",
    "There is late gadolinium enhancement at the {which} right ventricular insertion point{s}{loc}.",
    "Small areas of fibrosis at the {which} RV insertion point{s}{loc}, a non-specific finding.",
    "Hyperenhancement localised to the {which} RV insertion point{s}{loc}.",
    "RV insertion point LGE ({which}){loc}.",
    "Delayed enhancement at the {which} RV insertion point{s}{loc}, non-ischaemic.",
    "Insertion point scar ({which} RV insertion point{s}){loc}.",
    "There is focal enhancement of the {which} RV insertion point{s}{loc}.",
    "Late enhancement is confined to the {which} RV insertion point{s}{loc}.",
    "Minor RV insertion point fibrosis ({which}){loc}.",
]
_TM_WORDS = {
    "subendocardial": ["subendocardial"], "<50%": ["subendocardial (<50 %)", "<50% transmural", "partial-thickness "
                                                  "(<50 %)"],
    ">50%": [">50% transmural", "near-transmural (>50 %)", "predominantly transmural (>50%)"],
    "transmural": ["transmural", "full-thickness"],
    "mid-wall": ["mid-wall", "midmyocardial", "intramyocardial mid-wall"],
    "subepicardial": ["subepicardial", "epicardial"],
}
_DEFAULT_TM = {"ischaemic": "subendocardial", "mid-wall": "mid-wall", "subepicardial": "subepicardial", "rvip": None}
_NEG = [
    "No late gadolinium enhancement.", "There is no myocardial late gadolinium enhancement.",
    "No evidence of myocardial scar or infiltration.", "Late gadolinium enhancement imaging shows no scar.",
    "LGE: none.", "No LGE to suggest infarction or infiltration.", "No focal fibrosis on delayed enhancement imaging.",
    "There is no hyperenhancement to suggest prior infarction.", "Myocardial late enhancement was not seen.",
    "Absence of late gadolinium enhancement.", "No areas of myocardial LGE are identified.",
    "Late gadolinium enhancement imaging was unremarkable.",
]
_NEG_IMP = [
    "No evidence of myocardial infarction, fibrosis or infiltration.", "No LGE.", "No myocardial scar.",
    "Normal study with no late gadolinium enhancement.", "No infarct or non-ischaemic fibrosis.",
    "Structurally normal heart without LGE.", "No scar to suggest an arrhythmogenic substrate.",
    "No evidence of myocarditis or prior infarction on LGE imaging.", "Absent LGE.",
    "No features of infarction.",
]
_NOT_DONE = ["LGE imaging was not performed.", "Post-contrast imaging not acquired.",
             "Late gadolinium enhancement imaging was not performed as no contrast was given.",
             "Scar could not be assessed (no contrast).", "LGE not assessed.", "Tissue characterisation limited to "
             "native T1 and T2 mapping."]
_MVO = ["There is associated microvascular obstruction.", "A dark core of microvascular obstruction (MVO) is present.",
        "Microvascular obstruction is seen within the infarct.", "MVO is present."]


def _lge_sentences(facts: dict, rng: np.random.Generator) -> tuple[list[str], str]:
    """(findings sentences, impression sentence) about LGE."""
    if not facts.get("lge_performed", True):
        return [_pick(rng, _NOT_DONE)], _pick(rng, ["Scar not assessed (no contrast).", "LGE was not performed.",
                                                     "Unable to assess for myocardial scar as contrast was not given.",
                                                     "Normal LV and RV size and function."])
    if not facts["lge"]:
        return [_pick(rng, _NEG)], _pick(rng, _NEG_IMP)
    pattern = facts.get("pattern") or "ischaemic"
    if pattern not in PATTERNS:
        raise ValueError(f"unknown scar pattern {pattern!r}; expected one of {PATTERNS}")
    segments = list(facts.get("segments") or [])
    loc = describe_segments(segments, rng) if segments else ""
    tm_key = facts.get("transmurality") or _DEFAULT_TM[pattern]
    if tm_key is not None and tm_key not in _TM_WORDS:
        raise ValueError(f"unknown transmurality {tm_key!r}; expected one of {TRANSMURALITY}")
    tm = _pick(rng, _TM_WORDS[tm_key]) if tm_key else "focal"
    if pattern == "rvip":
        which = _pick(rng, ["inferior", "superior and inferior", "anterior and inferior"])
        s = "s" if " and " in which else ""
        text = _pick(rng, _POS_RVIP).format(which=which, s=s, loc=f", involving {loc}" if loc else "")
        imp = f"RV insertion point LGE{f' ({loc})' if loc else ''}, a non-specific, non-ischaemic pattern."
        return [text], imp
    loc = loc or _pick(rng, ["the left ventricle", "the LV myocardium"])
    templates = _POS_ISCH if pattern == "ischaemic" else _POS_NONISCH
    text = _pick(rng, templates).format(tm=tm, Tm=tm[0].upper() + tm[1:], loc=loc)
    out = [text]
    if pattern == "ischaemic" and facts.get("mvo"):
        out.append(_pick(rng, _MVO))
    elif pattern == "ischaemic" and rng.random() < 0.5:
        out.append(_pick(rng, ["No microvascular obstruction.", "No MVO."]))
    label = {"ischaemic": "Infarct", "mid-wall": "Mid-wall fibrosis", "subepicardial": "Subepicardial LGE"}[pattern]
    tail = {"ischaemic": _pick(rng, [" in keeping with prior myocardial infarction.", ", consistent with previous MI.",
                                     " (ischaemic pattern)."]),
            "mid-wall": _pick(rng, [", typical of DCM.", ", a non-ischaemic pattern.", "."]),
            "subepicardial": _pick(rng, [", consistent with myocarditis.", " in keeping with prior myocarditis.", "."])}
    imp = f"{label} of {loc}{tail[pattern]}" if rng.random() < 0.5 else f"{tm[0].upper() + tm[1:]} LGE involving " \
        f"{loc}{tail[pattern]}"
    return out, imp


def write_report(facts: dict, rng: np.random.Generator) -> str:
    """A free-text CMR report for one phantom patient (see the module docstring; keys in docs/ARCHITECTURE.md)."""
    for key in ("lge", "lvef", "lvedv"):
        if key not in facts:
            raise ValueError(f"report facts miss {key!r} (have {sorted(facts)})")
    h = {name: _pick(rng, opts) for name, opts in _HEADERS.items()}
    indication = facts.get("indication") or "chest pain"
    age, sex = facts.get("age", 60), facts.get("sex", "M")
    ind = _pick(rng, _INDICATION.get(indication, [indication.capitalize() + "."]))
    if rng.random() < 0.5:
        ind = f"{age}-year-old {_sex_words(sex, rng)}. {ind}"
    lge_find, lge_imp = _lge_sentences(facts, rng)

    findings = [_lv(facts, rng)]
    if facts["lge"] and facts.get("pattern") in (None, "ischaemic") and facts.get("segments") and rng.random() < 0.6:
        findings.append(f"Regional hypokinesia of {describe_segments(facts['segments'], rng)}.")
    findings.append(_rv(facts, rng))
    extras = [_pick(rng, opts) for opts in _OTHER if rng.random() < 0.7]
    lge_block = lge_find + ([_mapping(facts, rng)] if rng.random() < 0.7 else [])
    if rng.random() < 0.5:
        findings += extras + lge_block
    else:
        findings += lge_block + extras
    sep = "\n" if rng.random() < 0.4 else " "
    findings_text = sep.join(findings)

    ef = float(facts["lvef"])
    lv_imp = _pick(rng, [f"LVEF {ef:.1f}%.", f"{'Normal' if ef >= 55 else 'Impaired'} LV systolic function "
                                             f"(EF {ef:.0f} %)."])
    imp_items = [lv_imp, lge_imp] if rng.random() < 0.5 else [lge_imp, lv_imp]
    if rng.random() < 0.4:
        impression = "\n".join(f"{i}. {s}" for i, s in enumerate(imp_items, 1))
    else:
        impression = " ".join(imp_items)

    def block(name: str, body: str) -> str:
        head = h[name]
        return f"{head}\n{body}" if not head.endswith(":") or rng.random() < 0.3 else f"{head} {body}"

    parts = []
    if rng.random() < 0.5:
        parts.append(_phi(facts, rng))
    front = [block("indication", ind)]
    if rng.random() < 0.6:
        front.append(block("history", _pick(rng, _HISTORY)))
        if rng.random() < 0.3:
            front.reverse()
    parts += front
    tech = block("technique", _technique(facts, rng))
    place_tech_late = rng.random() < 0.15
    if not place_tech_late:
        parts.append(tech)
    parts.append(block("findings", findings_text))
    if place_tech_late:
        parts.append(tech)
    parts.append(block("impression", impression))
    if rng.random() < 0.25:
        parts.append(block("other", _pick(rng, ["Clinical correlation recommended.", "Discussed with the referring "
                                                "team.", "Images available on PACS for review."])))
    return ("\n\n" if rng.random() < 0.7 else "\n").join(parts) + "\n"
