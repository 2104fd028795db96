"""Phantom report text round-trips with the report reader (lgeclip.report)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lgeclip.phantom.reports import describe_segments, segment_words, write_report
from lgeclip.report import extract_lge_sentences, lge_status, sections

_TERRITORIES = {"lad": [1, 2, 7, 8, 13, 14, 17], "rca": [3, 4, 9, 10, 15], "lcx": [5, 6, 11, 12, 16]}
_INDICATIONS = ["chest pain", "suspected myocarditis", "prior myocardial infarction", "cardiomyopathy",
                "ventricular tachycardia"]


def _subset(rng: np.random.Generator, pool: list[int]) -> list[int]:
    return sorted(int(x) for x in rng.choice(pool, size=int(rng.integers(1, len(pool) + 1)), replace=False))


def random_facts(rng: np.random.Generator) -> dict:
    lge = bool(rng.random() < 0.5)
    pattern, segments, tm, mvo = None, [], None, False
    if lge:
        pattern = str(rng.choice(["ischaemic", "mid-wall", "subepicardial", "rvip"]))
        if rng.random() < 0.3:  # arbitrary segment sets, apex included
            segments = _subset(rng, list(range(1, 18)))[:5]
        elif pattern == "ischaemic":
            segments = _subset(rng, _TERRITORIES[str(rng.choice(list(_TERRITORIES)))])
        else:
            segments = {"mid-wall": [2, 3, 8, 9], "subepicardial": [5, 6, 11, 12]}.get(
                pattern, [[3], [2, 3], [3, 9], []][int(rng.integers(4))])
        tm = {"ischaemic": str(rng.choice(["subendocardial", "<50%", ">50%", "transmural"])), "mid-wall": "mid-wall",
              "subepicardial": "subepicardial", "rvip": None}[pattern]
        mvo = pattern == "ischaemic" and bool(rng.random() < 0.3)
    return {"lge": lge, "pattern": pattern, "segments": segments, "transmurality": tm, "mvo": mvo,
            "lvef": float(rng.uniform(15, 72)), "lvedv": float(rng.uniform(90, 320)),
            "rv_normal": bool(rng.random() < 0.8), "indication": str(rng.choice(_INDICATIONS)),
            "age": int(rng.integers(18, 90)), "sex": str(rng.choice(["M", "F"])),
            "patient_name": f"Testperson^Alexa{int(rng.integers(1000))}", "lge_performed": bool(rng.random() < 0.9)}


def _cohort(n: int = 400, seed: int = 1234) -> list[tuple[dict, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        facts = random_facts(rng)
        out.append((facts, write_report(facts, rng)))
    return out


COHORT = _cohort()


def test_round_trip_status_and_extraction():
    bad = []
    for facts, text in COHORT:
        expected = "unknown" if not facts["lge_performed"] else ("positive" if facts["lge"] else "negative")
        got = lge_status(text)
        sentences = extract_lge_sentences(text)
        if got != expected or (facts["lge_performed"] and not sentences):
            bad.append((expected, got, sentences, text))
    assert not bad, f"{len(bad)} of {len(COHORT)} reports do not round-trip; first: {bad[0]}"
    counts = {s: sum(lge_status(t) == s for _, t in COHORT) for s in ("positive", "negative", "unknown")}
    assert min(counts.values()) >= 20, counts


def test_positive_sentences_name_the_scar_location():
    checked = 0
    for facts, text in COHORT:
        if not (facts["lge"] and facts["lge_performed"]):
            continue
        joined = " ".join(extract_lge_sentences(text)).lower()
        for seg in facts["segments"]:
            level, wall = segment_words(seg)
            if wall == "apex":
                assert re.search(r"\bap(?:ex|ical cap)\b", joined), (seg, joined)
                continue
            assert re.search(rf"\b{wall}\b", joined), (seg, wall, joined)
            assert level in joined or "basal to apical" in joined, (seg, level, joined)
            checked += 1
        if facts["pattern"] == "rvip":
            assert "insertion point" in joined, joined
    assert checked > 100


def test_reports_have_sections_and_keep_phi_out_of_lge_text():
    with_phi = 0
    for facts, text in COHORT:
        secs = sections(text)
        assert {"indication", "findings", "impression"} <= set(secs), (list(secs), text)
        name = facts["patient_name"]
        with_phi += name in text or name.upper() in text
        assert not any(name.lower() in s.lower() for s in extract_lge_sentences(text))
    assert 0.2 * len(COHORT) < with_phi < 0.8 * len(COHORT)


def test_reports_vary():
    texts = [t for _, t in COHORT]
    assert len(set(texts)) == len(texts)
    first_lge = {extract_lge_sentences(t)[0] for f, t in COHORT if f["lge_performed"]}
    assert len(first_lge) > 100
    negatives = [t for f, t in COHORT if f["lge_performed"] and not f["lge"]]
    neg_sentences = {re.sub(r"\s+", " ", extract_lge_sentences(t)[0]) for t in negatives}
    assert len(neg_sentences) >= 10
    # indications naming infarction / myocarditis appear in reports whose findings are negative
    assert any(re.search(r"infarct|myocarditis|scar", sections(t)["indication"], re.I) for t in negatives)
    headers = {line.strip() for t in texts for line in t.splitlines()
               if re.match(r"^(?:findings|cmr findings|results|impression|conclusions?(?:\(s\))?|summary|opinion)\b",
                           line.strip(), re.I)}
    assert len({h.split(":")[0].split()[0].lower() for h in headers}) >= 6


def test_deterministic_given_seed():
    facts = random_facts(np.random.default_rng(5))
    assert write_report(facts, np.random.default_rng(9)) == write_report(facts, np.random.default_rng(9))


@pytest.mark.parametrize(("segments", "allowed"), [
    ([4, 10], {"the basal and mid inferior wall", "the basal to mid inferior wall"}),
    ([4], {"the basal inferior wall", "the basal inferior segment"}),
    ([17], {"the apex", "the apical cap", "the true apex"}),
    ([5, 11, 4, 10], {"the basal and mid inferior and inferolateral walls",
                      "the basal to mid inferior and inferolateral walls"}),
    ([2, 8, 14], {"the basal and mid anteroseptal wall and the apical septal wall",
                  "the basal to mid anteroseptal wall and the apical septal wall",
                  "the basal and mid anteroseptal wall and the apical septal segment",
                  "the basal to mid anteroseptal wall and the apical septal segment"}),
])
def test_describe_segments(segments, allowed):
    for seed in range(8):
        assert describe_segments(segments, np.random.default_rng(seed)) in allowed


def test_bad_facts_raise():
    rng = np.random.default_rng(0)
    facts = random_facts(rng) | {"lge": True, "pattern": "patchy", "lge_performed": True}
    with pytest.raises(ValueError, match="pattern"):
        write_report(facts, rng)
    with pytest.raises(ValueError, match="1..17"):
        segment_words(18)
    with pytest.raises(ValueError, match="lvef"):
        write_report({"lge": False, "lvedv": 150.0}, rng)
