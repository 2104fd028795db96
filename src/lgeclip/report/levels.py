"""Which short-axis levels (basal / mid / apical) a report sentence names.

Reports place enhancement by level ("the basal to mid inferior wall", "the apical septal segment", "(basal and
mid)", "the true apex"). ``sentence_levels`` reads those words, expands ranges ("basal to apical" includes mid)
and ignores the layer word "mid-wall" (and "mid-myocardial"), which is about depth, not level.
"""

from __future__ import annotations

import re

LEVELS: tuple[str, ...] = ("basal", "mid", "apical")

# depth words that contain "mid" but name no level
_LAYER_MID = re.compile(r"\bmid[- ]?(?:wall|myocardi\w*)\b", re.IGNORECASE)
_LEVEL_WORD = re.compile(
    r"\b(base|basal|basally|mid|mid-?ventricular|mid-?cavity|apex|apical|apically)\b", re.IGNORECASE)
_RANGE = re.compile(r"\b(base|basal|mid|apex|apical)\s+(?:to|through|-|–)\s+(base|basal|mid|apex|apical)\b",
                    re.IGNORECASE)


def _level(word: str) -> str:
    w = word.lower()
    if w.startswith("bas"):
        return "basal"
    if w.startswith("ap"):
        return "apical"
    return "mid"


def sentence_levels(sentence: str) -> frozenset[str] | None:
    """The levels a sentence names (subset of ``LEVELS``), or None when it names none.

    >>> sorted(sentence_levels("LGE of the basal to apical anterior wall."))
    ['apical', 'basal', 'mid']
    >>> sentence_levels("Intramyocardial mid-wall fibrosis.") is None
    True
    """
    text = _LAYER_MID.sub(" ", sentence)
    found = {_level(m.group(1)) for m in _LEVEL_WORD.finditer(text)}
    for m in _RANGE.finditer(text):
        a, b = sorted((LEVELS.index(_level(m.group(1))), LEVELS.index(_level(m.group(2)))))
        found.update(LEVELS[a: b + 1])
    return frozenset(found) if found else None
