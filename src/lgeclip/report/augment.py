"""Rule-based rewriting of report sentences for language augmentation in training (PMC-MSA's idea): the same
finding in the wording another reporter would use.

Each rule rewrites one kind of phrase and keeps what the text supervision reads: presence / absence (negations
stay), level words (basal / mid / apical), wall words (hyphenated forms are read by ``anatomy.aha``) and depth.
- enhancement terms: LGE, late gadolinium enhancement, delayed (hyper)enhancement, late enhancement,
  hyperenhancement;
- number formats: "<50%", "< 50 %", "less than 50%", "under 50 %" (and the ">" side); "50%" / "50 %" / "50 percent";
- spelling and abbreviations: ischaemic / ischemic, sub-endocardial, mid-myocardial, infero-lateral, MI / myocardial
  infarction, MVO / microvascular obstruction;
- clause order: a trailing "..., in keeping with / consistent with ..." clause moved to the front.
With ``augment_sentence(text, rng)`` each rule applies with probability ``p_rule``; every match of an applied rule
takes a variant drawn from its family.
"""

from __future__ import annotations

import re

import numpy as np

ENHANCEMENT_TERMS = ("late gadolinium enhancement", "delayed hyperenhancement", "delayed enhancement",
                     "late enhancement", "hyperenhancement", "LGE")
LESS_THAN = ("<50%", "< 50 %", "less than 50%", "under 50 %")
MORE_THAN = (">50%", "> 50 %", "more than 50%", "over 50 %")
# families of interchangeable spellings (each a tuple of variants)
SPELLINGS: tuple[tuple[str, ...], ...] = (
    ("non-ischaemic", "nonischaemic", "non-ischemic", "nonischemic"),
    ("ischaemic", "ischemic"),
    ("subendocardial", "sub-endocardial"),
    ("subepicardial", "sub-epicardial"),
    ("mid-wall", "midwall", "mid-myocardial"),
    ("inferolateral", "infero-lateral"),
    ("anterolateral", "antero-lateral"),
    ("anteroseptal", "antero-septal"),
    ("inferoseptal", "infero-septal"),
    ("myocardial infarction", "MI"),
    ("microvascular obstruction", "MVO"),
)
TRAILING_CLAUSE = re.compile(r"^(?P<head>.+?),\s+(?P<tail>(?:in keeping with|consistent with|suggestive of|"
                             r"compatible with)[^,]*?)\.$", re.IGNORECASE)


def _family_pattern(variants: tuple[str, ...]) -> re.Pattern:
    alts = sorted(variants, key=len, reverse=True)  # longest first: "delayed hyperenhancement" before "hyper..."
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(a) for a in alts) + r")(?![\w-])", re.IGNORECASE)


_ENH = _family_pattern(ENHANCEMENT_TERMS)
_LESS = re.compile(r"(?:<\s*|less than\s+|under\s+)50\s*(?:%|percent)", re.IGNORECASE)
_MORE = re.compile(r"(?:>\s*|more than\s+|over\s+|greater than\s+)50\s*(?:%|percent)", re.IGNORECASE)
_PCT = re.compile(r"(?<![<>\d])(\d+)\s*(?:%|percent)(?!\w)")
_FAMILIES = [(_family_pattern(v), v) for v in SPELLINGS]


def _is_abbreviation(word: str) -> bool:
    return len(word) > 1 and word.isupper()


def _match_case(new: str, old: str) -> str:
    """``new`` capitalised like ``old``'s first letter; abbreviations keep their own case either way (a sentence
    start is capitalised again at the end)."""
    if _is_abbreviation(new) or _is_abbreviation(old):
        return new
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _sub(pattern: re.Pattern, variants: tuple[str, ...], text: str, rng: np.random.Generator) -> str:
    return pattern.sub(lambda m: _match_case(variants[int(rng.integers(len(variants)))], m.group(0)), text)


def _reorder(text: str) -> str:
    m = TRAILING_CLAUSE.match(text.strip())
    if not m:
        return text
    head, tail = m.group("head"), m.group("tail")
    if not _is_abbreviation(head.split(" ", 1)[0]):  # "LGE ..." keeps its capitals
        head = head[:1].lower() + head[1:]
    return f"{tail[:1].upper()}{tail[1:]}, {head}."


def augment_sentence(text: str, rng: np.random.Generator, p_rule: float = 0.5) -> str:
    """One rewriting of a report sentence (see the module docstring); the same meaning, other words."""
    out = text
    if rng.random() < p_rule:
        out = _sub(_ENH, ENHANCEMENT_TERMS, out, rng)
    if rng.random() < p_rule:
        out = _sub(_LESS, LESS_THAN, out, rng)
        out = _sub(_MORE, MORE_THAN, out, rng)
        out = _PCT.sub(lambda m: m.group(1) + ("%", " %", " percent")[int(rng.integers(3))], out)
    for pattern, variants in _FAMILIES:
        if pattern.search(out) and rng.random() < p_rule:
            out = _sub(pattern, variants, out, rng)
    if rng.random() < p_rule:
        out = _reorder(out)
    return out[:1].upper() + out[1:]
