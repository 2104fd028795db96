"""Sentence templates of synthetic scar captions, and the level suffix shared with real captions."""

from __future__ import annotations

import re

import numpy as np

# Used interchangeably (paper): a synthetic caption names one of these for the enhancement.
ENHANCEMENT_WORDS: tuple[str, ...] = (
    "delayed enhancement",
    "delayed hyperenhancement",
    "late enhancement",
    "scar",
    "infarct",
)

# {extent}, {enh}, {location} are filled in; every template names all three.
TEMPLATES: tuple[str, ...] = (
    "There is {extent} {enh} in the {location} wall.",
    "{extent} {enh} of the {location} wall.",
    "The {location} wall shows {extent} {enh}.",
    "{extent} {enh} is present in the {location} wall.",
    "There is evidence of {extent} {enh} involving the {location} wall.",
    "{location} wall with {extent} {enh}.",
    "Findings are consistent with {extent} {enh} in the {location} wall.",
    "{extent} {enh} is seen in the {location} segments.",
    "LGE imaging demonstrates {extent} {enh} of the {location} wall.",
    "There is {extent} {enh} involving the {location} myocardium.",
)


# Sentences for report-negative slices that keep their clean image (data.negative_template_prob): the negated
# counterpart of TEMPLATES, so that "no <enhancement>" is tied to clean myocardium as firmly as the synthetic
# sentences tie "<enhancement> in the <location> wall" to scar. {enh} is filled in.
NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "There is no {enh} in the myocardium.",
    "No {enh} is seen.",
    "No myocardial {enh}.",
    "The myocardium shows no {enh}.",
    "There is no evidence of {enh}.",
    "No {enh} in the left ventricular wall.",
)


# Location-free sentences for a synthetic scar (SynthScarCfg.generic_prob): the affirmative twins of
# NEGATIVE_TEMPLATES, so that "<enhancement> in the myocardium" and "no <enhancement> in the myocardium" differ
# only by the negation. Without them every affirmative training caption names a wall, and a short location-free
# prompt ("there is hyperenhancement in the myocardium.") looks to the text tower like the negated captions.
GENERIC_TEMPLATES: tuple[str, ...] = (
    "There is {enh} in the myocardium.",
    "{enh} is seen.",
    "Myocardial {enh}.",
    "The myocardium shows {enh}.",
    "There is evidence of {enh}.",
    "{enh} in the left ventricular wall.",
)


def level_suffix(level: str) -> str:
    """The level sentence appended to every caption: ``"This image is from <level> level."``."""
    return f"This image is from {level} level."


_LEVEL_SUFFIX = re.compile(r"\s*This image is from \S+ level\.\s*$")


def split_level_suffix(text: str) -> tuple[str, str]:
    """``(sentence, suffix)``: a caption split before its trailing ``level_suffix`` (suffix "" when absent)."""
    m = _LEVEL_SUFFIX.search(text)
    return (text, "") if m is None else (text[: m.start()], text[m.start():].strip())


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:]


def render_sentence(template: int, enh: int, location: str, extent: str, level: str) -> str:
    """Caption from template / enhancement-word indices; ends with ``level_suffix(level)``."""
    body = TEMPLATES[template].format(extent=extent, enh=ENHANCEMENT_WORDS[enh], location=location)
    return f"{_capitalise(body)} {level_suffix(level)}"


def draw_sentence(rng: np.random.Generator, location: str, extent: str, level: str,
                  generic_prob: float = 0.0) -> tuple[str, dict]:
    """Draw a template and an enhancement word; return the sentence and the draws (JSON-able). With probability
    ``generic_prob`` the sentence is a location-free ``GENERIC_TEMPLATES`` one (drawn only when > 0, so the
    paper's random stream is unchanged)."""
    if generic_prob > 0 and rng.random() < generic_prob:
        g = int(rng.integers(len(GENERIC_TEMPLATES)))
        e = int(rng.integers(len(ENHANCEMENT_WORDS)))
        body = GENERIC_TEMPLATES[g].format(enh=ENHANCEMENT_WORDS[e])
        return f"{_capitalise(body)} {level_suffix(level)}", {"template": f"generic{g}",
                                                              "enhancement_word": ENHANCEMENT_WORDS[e]}
    t = int(rng.integers(len(TEMPLATES)))
    e = int(rng.integers(len(ENHANCEMENT_WORDS)))
    return render_sentence(t, e, location, extent, level), {"template": t, "enhancement_word": ENHANCEMENT_WORDS[e]}


def draw_negative_sentence(rng: np.random.Generator, level: str) -> str:
    """A negated template sentence (see NEGATIVE_TEMPLATES) ending with ``level_suffix(level)``."""
    t = NEGATIVE_TEMPLATES[int(rng.integers(len(NEGATIVE_TEMPLATES)))]
    body = t.format(enh=ENHANCEMENT_WORDS[int(rng.integers(len(ENHANCEMENT_WORDS)))])
    return f"{_capitalise(body)} {level_suffix(level)}"


def _twin_table() -> dict[str, str]:
    """Lower-cased template body -> its negation twin (GENERIC <-> NEGATIVE, every enhancement word)."""
    table: dict[str, str] = {}
    for pos, neg in zip(GENERIC_TEMPLATES, NEGATIVE_TEMPLATES, strict=True):
        for enh in ENHANCEMENT_WORDS:
            p, n = _capitalise(pos.format(enh=enh)), _capitalise(neg.format(enh=enh))
            table[p.lower()], table[n.lower()] = n, p
    return table


_TWINS = _twin_table()
_THERE_IS = re.compile(r"^(there is|there are)( no)? (.+)$", re.IGNORECASE)
_NO_START = re.compile(r"^no (.+)$", re.IGNORECASE)


def negation_twin(caption: str) -> str | None:
    """The caption with its statement negated (affirmative <-> negated), the level suffix kept; None when no rule
    applies. Rules: the generic / negated template twins, "There is [no] X" and a leading "No X". A text
    transformation only: used as a hard negative of the caption's own image (``model.negation_negatives``)."""
    body, suffix = split_level_suffix(caption)
    suffix = f" {suffix}" if suffix else ""
    key = body.strip().lower()
    if key in _TWINS:
        twin = _TWINS[key]
    elif (t := _THERE_IS.match(body.strip())) is not None:
        verb, no, rest = t.group(1), t.group(2), t.group(3)
        twin = f"{verb} {rest}" if no else f"{verb} no {rest}"
    elif (t := _NO_START.match(body.strip())) is not None:
        twin = f"There is {t.group(1)}" if not t.group(1).lower().startswith(("evidence", "areas")) else None
        if twin is None:
            return None
    else:
        return None
    return _capitalise(twin) + suffix
