"""Sentence templates of synthetic scar captions, and the level suffix shared with real captions."""

from __future__ import annotations

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


def level_suffix(level: str) -> str:
    """The level sentence appended to every caption: ``"This image is from <level> level."``."""
    return f"This image is from {level} level."


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:]


def render_sentence(template: int, enh: int, location: str, extent: str, level: str) -> str:
    """Caption from template / enhancement-word indices; ends with ``level_suffix(level)``."""
    body = TEMPLATES[template].format(extent=extent, enh=ENHANCEMENT_WORDS[enh], location=location)
    return f"{_capitalise(body)} {level_suffix(level)}"


def draw_sentence(rng: np.random.Generator, location: str, extent: str, level: str) -> tuple[str, dict]:
    """Draw a template and an enhancement word; return the sentence and the draws (JSON-able)."""
    t = int(rng.integers(len(TEMPLATES)))
    e = int(rng.integers(len(ENHANCEMENT_WORDS)))
    return render_sentence(t, e, location, extent, level), {"template": t, "enhancement_word": ENHANCEMENT_WORDS[e]}


def draw_negative_sentence(rng: np.random.Generator, level: str) -> str:
    """A negated template sentence (see NEGATIVE_TEMPLATES) ending with ``level_suffix(level)``."""
    t = NEGATIVE_TEMPLATES[int(rng.integers(len(NEGATIVE_TEMPLATES)))]
    body = t.format(enh=ENHANCEMENT_WORDS[int(rng.integers(len(ENHANCEMENT_WORDS)))])
    return f"{_capitalise(body)} {level_suffix(level)}"
