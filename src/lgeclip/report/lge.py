"""LGE sentence extraction and a NegEx-style LGE status (pure Python, regular expressions only).

Decisions (see also the tests, which pin them):

- Only Findings and Impression are read. A report without any header is read whole (as findings); a report whose
  headers name neither findings nor impression is read from its untitled / "other" parts, never from
  Indication / History / Technique.
- LGE keywords: late/delayed (gadolinium/contrast) (hyper)enhancement, LGE, hyperenhancement, scar(ring),
  infarct(ion), fibrosis / fibrotic, and a bare "enhancement" (myocardial, mid-wall, ...). Not LGE of the
  myocardium: pericardial enhancement / pericardial LGE, early / first-pass / perfusion / valve / mass / thrombus
  enhancement, "contrast-enhanced", surgical scars, cerebral / renal / splenic infarcts, pulmonary / cystic /
  liver fibrosis and *diffuse* (interstitial) fibrosis from T1 / ECV mapping. MVO ("microvascular obstruction")
  is a secondary keyword: a sentence about it is extracted; an affirmed MVO is positive, a negated one decides
  nothing ("no MVO" says nothing about scar).
- Procedural mentions ("LGE imaging was performed", "to assess for scar") are not findings: they are not
  extracted and decide nothing, unless they say the images were normal ("LGE imaging was unremarkable": negative)
  or not acquired / non-diagnostic (unavailable).
- Each keyword is positive, negative (pre- or post-negation trigger in scope), uncertain (hedge: possible,
  equivocal, cannot exclude, artefact, vs, ...) or unavailable (not performed / non-diagnostic). A sentence takes
  the first of positive > negative > uncertain > unavailable over its keywords, and a report likewise over its
  sentences, with uncertain and unavailable both giving "unknown". "Likely" / "probable" / "consistent with"
  are not hedges (positive); "no definite LGE" is negative.
- Negation scope: strong triggers (no, without, absence of, negative for, free of, neither/nor) reach 15 words
  forward through commas; weak ones (not, n't, exclude) 6 words and stop at a comma; post-triggers ("not seen",
  "is absent", "none", ": none", "was negative", "excluded") reach 6 words back and stop at a comma. All scopes
  stop at ``;`` ``:`` and at but / however / although / though / whereas / while / except / apart from /
  other than / "there is". A post-trigger after a plural list crosses its commas ("LGE, oedema and infiltration are
  absent"); a keyword affirmed after "and" ("no thrombus and LGE is seen") leaves an earlier "no". Known limit:
  "No thrombus, subendocardial LGE ..." in ONE sentence (comma, no verb) reads negative.
"""

from __future__ import annotations

import re

from lgeclip.report.sections import section_list, split_sentences

__all__ = ["extract_lge_sentences", "lge_status", "sentence_status"]

_F = re.IGNORECASE
_PRIMARY = re.compile(
    r"(?:\blate|\bdelayed)[\s-]+(?:(?:gadolinium|contrast|myocardial)[\s-]+)?(?:hyper[\s-]?)?enhanc(?:ement|ements|ing)\b"
    r"|\blge\b|\bhyper[\s-]?enhanc\w*|\bscar(?:s|ring|red)?\b|\binfarct(?:s|ion|ions|ed)?\b"
    r"|\bfibros[ie]s\b|\bfibrotic\b|\bfibrosed\b|\benhanc(?:ement|ements|ing|es|ed)\b"
    r"|\b(?:gadolinium|contrast)\s+(?:uptake|retention)\b", _F)
_SECONDARY = re.compile(r"\bmicrovascular\s+obstruction\b|\bmvo\b|\bno[\s-]reflow\b", _F)

_PREV_WORD = re.compile(r"([\w-]+)\W*$")
_SKIP_ENH_PREV = re.compile(
    r"^(?:pericardi\w*|early|first-?pass|pass|perfusion|valv\w*|leaflet|mass|tumou?r|thromb\w*|vascular|vessels?|"
    r"aort\w*|contrast|gadolinium|image|signal|edge|nodal|pleural|pericardium)$", _F)
_SKIP_ENH_NEXT = re.compile(r"^\W*(?:\w+\s+){0,2}(?:of|in|within|along|involving)\s+(?:the\s+)?"
                            r"(?:pericardi\w*|mass|tumou?r|thromb\w*|valves?|aort\w*|pleura\w*)\b", _F)
_SKIP_SCAR_PREV = re.compile(r"^(?:sternotomy|surgical|skin|incision\w*|thoracotomy|operative|cutaneous|keloid)$", _F)
_SKIP_INFARCT_PREV = re.compile(r"^(?:cerebral|renal|splenic|lacunar|pulmonary|lung|bowel|brain|hepatic|kidney|"
                                r"cerebellar|mesenteric|stroke)$", _F)
_SKIP_FIBROSIS_BEFORE = re.compile(r"\b(?:pulmonary|lung|cystic|liver|hepatic|retroperitoneal|diffuse|"
                                   r"interstitial|idiopathic|radiation|mediastinal|endomyocardial\s+biopsy)"
                                   r"\W+(?:[\w-]+\W+){0,2}$", _F)

_PROC_AFTER = re.compile(
    r"^[\s-]*(?:\([^)]*\)\s*)?(?:and\s+[\w-]+\s+)?(?:imag(?:es|ing)?|sequences?|acquisitions?|stud(?:y|ies)|scans?|"
    r"assessment|evaluation|protocol|series|views?|technique|psir|inversion|stack|"
    r"(?:was|were|is|are)\s+(?:not\s+)?(?:performed|acquired|obtained|undertaken|carried\s+out))\b", _F)
_PROC_BEFORE = re.compile(
    r"(?:\b(?:to|for)\s+(?:assess|evaluate|exclude|rule\s+out|look\s+for|detect|screen\s+for|quantify|"
    r"characteri[sz]e)|\b(?:assess(?:ment|ed|ing)?|evaluat\w+|screen\w*|search\w*|look\w*|question)\s+(?:of|for)"
    r"|\b(?:unable|not\s+able|impossible)\s+to\s+(?:assess|evaluate|exclude|rule\s+out))"
    r"\s+(?:for\s+|of\s+)?(?:the\s+|any\s+)?(?:[\w-]+\s+){0,2}$", _F)
_NOT_DONE = re.compile(
    r"\bnot\s+(?:been\s+)?(?:performed|acquired|obtained|done|given|administered|possible|available|assessed|assessable|"
    r"evaluable|evaluated|interpretable|diagnostic|undertaken|attempted|tolerated|completed)\b|\bnon-?diagnostic\b"
    r"|\buninterpretable\b|\bunassessable\b|\bomitted\b|\bdeclined\b|\babandoned\b|\bcontra-?indicated\b"
    r"|\b(?:could|can)\s*not\s+be\s+(?:performed|acquired|assessed|obtained|evaluated|interpreted|completed)\b"
    r"|\b(?:unable|not\s+able|impossible)\s+to\s+(?:perform|acquire|assess|obtain|evaluate|complete|interpret)\b"
    r"|\b(?:insufficient|inadequate|poor|non-?diagnostic)\s+(?:diagnostic\s+)?(?:image\s+)?quality\b"
    r"|\bno\s+(?:gadolinium|contrast)\b|\bwithout\s+(?:gadolinium|contrast)\b|\bnon-?contrast\b", _F)

_TERM = re.compile(r";|:|\b(?:but|however|although|though|whereas|while|yet|except|apart\s+from|aside\s+from|"
                   r"other\s+than|besides|nevertheless|there\s+(?:is|are|was|were))\b", _F)
_STRONG_PRE = re.compile(r"\b(?:no|without|absence\s+of|absent|negative\s+for|free\s+of|lack\s+of|lacks|neither|"
                         r"nor|none\s+of|rather\s+than|instead\s+of)\b", _F)
_WEAK_PRE = re.compile(r"\b(?:not|\w+n't|excludes?|exclusion\s+of|rules?\s+out|ruling\s+out|resolution\s+of)\b", _F)
_IMMEDIATE_PRE = re.compile(r"\b(?:unremarkable|normal)\b", _F)
_POST = re.compile(
    r"\b(?:not|n't)\s+(?:\w+ly\s+)?(?:seen|identified|present|demonstrated|detected|evident|visuali[sz]ed|"
    r"appreciated|found|noted|observed|shown|apparent|visible|convincing)\b|\babsent\b|\bnone\b|\bnil\b"
    r"|\bnegative\b|\bexcluded\b|\bruled\s+out\b|\bno\s+longer\b|\bresolved\b", _F)
_COLON_POST = re.compile(r"^\s*(?:\([^)]*\)\s*)?[:\-\u2013]\s*(?:none|no|nil|absent|negative|not\s+(?:seen|present|"
                         r"identified))\b", _F)
_HEDGE = re.compile(
    r"\b(?:possibl[ey]|questionabl[ey]|equivocal|indeterminate|uncertain|unclear|doubtful|borderline|suspicious|"
    r"suspected|query|queried|perhaps|might|versus|vs\b\.?|artefact\w*|artifact\w*"
    r"|(?:cannot|can\s+not|can't)\s+(?:be\s+)?(?:entirely\s+|completely\s+|fully\s+|confidently\s+)?"
    r"(?:excluded?|ruled?\s+out|rule\s+out)"
    r"|not\s+(?:be\s+)?(?:entirely\s+|completely\s+|confidently\s+)?(?:excluded|ruled\s+out)"
    r"|difficult\s+to\s+(?:exclude|assess|differentiate)|may\s+(?:represent|reflect|indicate|be\s+due\s+to|relate\s+to|"
    r"be\s+artefactual|be\s+artifactual)|could\s+(?:represent|reflect|indicate|be))|\?", _F)
_PSEUDO = re.compile(r"\bno\s+(?:significant\s+|interval\s+)?(?:change|increase|doubt)\b|\bnot\s+(?:only|necessarily)\b"
                     r"|\bwithout\s+(?:doubt|change)\b|\bgram[\s-]negative\b", _F)
# "LGE, oedema and infiltration are absent": a post-trigger after a plural list may cross its commas
_LIST_POST = re.compile(r"^(?:\s*,\s*[\w -]{1,30}?)*,?\s+(?:and|or|nor)\s+[\w -]{1,30}?\s+(?:are|were)\s+(?:all\s+)?"
                        r"(?:absent|negative|not\s+(?:seen|present|identified|demonstrated|detected))\b", _F)
# "no thrombus and subendocardial LGE is seen": an affirmed keyword after "and" leaves the earlier negation's scope
_AFFIRMED = re.compile(r"^\W*(?:[\w-]+\s+){0,4}?(?:is|are|was|were)\s+(?:also\s+)?(?:seen|present|noted|identified|"
                       r"demonstrated|evident)\b", _F)
_PROC_NORMAL = re.compile(r"\b(?:normal|unremarkable|negative)\b", _F)

_RANK = ("positive", "negative", "uncertain", "unavailable", "mentioned")


def _words(text: str) -> int:
    return len(re.findall(r"[\w%<>]+", text))


def _bounds(s: str, a: int, b: int, comma: bool) -> tuple[int, int]:
    """Start and end of the clause around s[a:b] (terminators; also commas when asked)."""
    lo, hi = 0, len(s)
    for t in _TERM.finditer(s):
        if t.end() <= a:
            lo = t.end()
        elif t.start() >= b:
            hi = min(hi, t.start())
    if comma:
        lo = max(lo, s.rfind(",", 0, a) + 1)
        nxt = s.find(",", b)
        hi = min(hi, nxt) if nxt >= 0 else hi
    return lo, hi


def _spans(rx: re.Pattern, s: str, avoid: list[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    out = []
    for m in rx.finditer(s):
        if not any(m.start() < e and s0 < m.end() for s0, e in avoid):
            out.append(m.span())
    return out


def _skip(s: str, a: int, b: int) -> bool:
    """Keyword mentions that are not about myocardial LGE (pericardium, lungs, surgery, ...)."""
    word = s[a:b].lower()
    prev = _PREV_WORD.search(s[:a])
    prev = prev.group(1).strip("-") if prev else ""
    if "enhanc" in word or word == "lge":
        return bool(_SKIP_ENH_PREV.match(prev) or _SKIP_ENH_NEXT.match(s[b:]))
    if word.startswith("scar"):
        return bool(_SKIP_SCAR_PREV.match(prev))
    if word.startswith("infarct"):
        return bool(_SKIP_INFARCT_PREV.match(prev))
    if word.startswith("fibro"):
        return _SKIP_FIBROSIS_BEFORE.search(s[:a]) is not None
    return False


def _in_window(spans: list[tuple[int, int]], s: str, lo: int, hi: int, a: int, b: int, window: int, pre: bool) -> bool:
    for t0, t1 in spans:
        if pre and lo <= t0 and t1 <= a and _words(s[t1:a]) <= window:
            return True
        if not pre and b <= t0 and t1 <= hi and _words(s[b:t0]) <= window:
            return True
    return False


def _keyword_status(s: str, a: int, b: int, trig: dict) -> str | None:
    c0, c1 = _bounds(s, a, b, comma=False)
    k0, k1 = _bounds(s, a, b, comma=True)
    if _PROC_AFTER.match(s[b:]) or _PROC_BEFORE.search(s[c0:a]):
        if _NOT_DONE.search(s[c0:c1]) or re.search(r"\b(?:no|without)\s+(?:[\w-]+\s+)?$", s[c0:a], _F):
            return "unavailable"
        if _in_window(trig["proc_normal"], s, c0, c1, a, b, 2, True) or \
                _in_window(trig["proc_normal"], s, c0, c1, a, b, 6, False):
            return "negative"
        return None
    if _NOT_DONE.search(s[k0:k1]):
        return "unavailable"
    strong = trig["strong"]
    if _AFFIRMED.match(s[b:]):  # keep only triggers after the last "and" before the keyword
        last_and = max((m.end() for m in re.finditer(r"\band\b", s[c0:a], _F)), default=None)
        strong = [t for t in strong if last_and is None or t[0] >= c0 + last_and]
    if (_in_window(strong, s, c0, c1, a, b, 15, True) or _in_window(trig["weak"], s, k0, k1, a, b, 6, True)
            or _in_window(trig["immediate"], s, k0, k1, a, b, 1, True)
            or _in_window(trig["post"], s, k0, k1, a, b, 6, False) or _COLON_POST.match(s[b:])
            or _LIST_POST.match(s[b:c1])):
        return "negative"
    if _in_window(trig["hedge"], s, c0, c1, a, b, 8, True) or _in_window(trig["hedge"], s, c0, c1, a, b, 8, False):
        return "uncertain"
    return "positive"


def sentence_status(sentence: str) -> str | None:
    """LGE status of one sentence: "positive" | "negative" | "uncertain" | "unavailable" | "mentioned" | None.

    None: no (myocardial, non-procedural) LGE keyword. "mentioned": only a negated secondary keyword ("no MVO").
    """
    s = sentence
    hedge = _spans(_HEDGE, s)
    avoid = hedge + _spans(_PSEUDO, s)
    trig = {
        "strong": _spans(_STRONG_PRE, s, avoid), "weak": _spans(_WEAK_PRE, s, avoid),
        "immediate": _spans(_IMMEDIATE_PRE, s, avoid), "post": _spans(_POST, s, avoid), "hedge": hedge,
        "proc_normal": _spans(_PROC_NORMAL, s, avoid),
    }
    found = set()
    for m in _PRIMARY.finditer(s):
        if not _skip(s, m.start(), m.end()):
            st = _keyword_status(s, m.start(), m.end(), trig)
            if st is not None:
                found.add(st)
    if not found:
        for m in _SECONDARY.finditer(s):
            st = _keyword_status(s, m.start(), m.end(), trig)
            if st is not None:
                found.add("positive" if st == "positive" else "mentioned")
    return next((r for r in _RANK if r in found), None)


def _reading_text(report_text: str) -> list[str]:
    parts = section_list(report_text)
    if all(name == "other" for name, _ in parts):
        return [report_text]
    chosen = [body for name, body in parts if name in ("findings", "impression")]
    return chosen or [body for name, body in parts if name == "other"]


def _classified(report_text: str) -> list[tuple[str, str]]:
    out, seen = [], set()
    for body in _reading_text(report_text):
        for sent in split_sentences(body):
            key = " ".join(sent.lower().split())
            if key in seen:
                continue
            seen.add(key)
            st = sentence_status(sent)
            if st is not None:
                out.append((sent, st))
    return out


def extract_lge_sentences(report_text: str) -> list[str]:
    """Sentences of Findings + Impression that talk about LGE (negated and hedged ones included), deduplicated in
    order. Procedural and not-performed / non-diagnostic statements are left out."""
    return [sent for sent, st in _classified(report_text) if st != "unavailable"]


def lge_status(report_text: str) -> str:
    """ "positive" | "negative" | "unknown" for a whole report (see the module docstring for the rules)."""
    found = {st for _, st in _classified(report_text)}
    if "positive" in found:
        return "positive"
    return "negative" if "negative" in found else "unknown"
