"""Report structure: section headers and sentence splitting (pure Python, no dependencies).

Section names are normalised to ``indication``, ``history``, ``technique``, ``findings``, ``impression`` and
``other``. A header is recognised at the start of a line when it is followed by ``:`` / `` - `` and text, when it
stands alone on its line (with or without colon), or when it is written in capitals and followed by a capitalised
word ("IMPRESSION Normal study."). Inside a line, a header is recognised only with a colon and after a sentence end
("... chest pain. Findings: ..."), so "History of MI." or "Findings consistent with ..." are never headers.
"""

from __future__ import annotations

import re

__all__ = ["SECTION_NAMES", "section_list", "sections", "split_sentences"]

SECTION_NAMES = ("indication", "history", "technique", "findings", "impression", "other")

# canonical name -> alternatives (regex, longest first where one is a prefix of another)
_HEADERS: dict[str, list[str]] = {
    "indication": [
        r"clinical\s+indications?", r"indications?(?:\s+for\s+(?:the\s+)?(?:study|scan|exam(?:ination)?))?",
        r"reasons?\s+for\s+(?:the\s+)?(?:study|scan|exam(?:ination)?|referral|request|test)",
        r"referral\s+(?:reason|indication)", r"clinical\s+question",
    ],
    "history": [
        r"(?:clinical|past\s+medical|medical|relevant|cardiac)\s+history", r"history",
        r"clinical\s+(?:details|information|background|notes)", r"background",
    ],
    "technique": [
        r"(?:exam(?:ination)?\s+|imaging\s+|scan\s+)?technique", r"(?:imaging\s+|scan\s+|cmr\s+)?protocol",
        r"sequences(?:\s+acquired)?", r"procedure", r"methods?", r"contrast(?:\s+agent)?",
    ],
    "findings": [r"(?:cmr\s+|mri\s+|cardiac\s+mri\s+)?findings", r"results?", r"observations"],
    "impression": [
        r"summary\s+and\s+conclusions?", r"(?:final\s+|overall\s+)?impressions?", r"conclusions?(?:\(s\))?",
        r"summary", r"opinion", r"interpretation",
    ],
    "other": [
        r"comments?", r"recommendations?", r"addendum", r"reported\s+by", r"(?:electronically\s+)?signed(?:\s+by)?",
        r"verified\s+by", r"dictated\s+by", r"patient(?:\s+name)?", r"name", r"dob", r"date\s+of\s+birth", r"mrn",
        r"accession(?:\s+(?:no\.?|number))?", r"referr(?:er|ing\s+(?:physician|clinician|doctor))",
        r"(?:exam|study)\s+date",
    ],
}
_ALT = "|".join(f"(?P<{name}>{'|'.join(alts)})" for name, alts in _HEADERS.items())
# header at line start: optional bullet/markdown, header, then ':' / ' - ' + text, or end of line
_LINE_HEADER = re.compile(
    rf"^[ \t]*(?:[#*_]+[ \t]*)?(?:{_ALT})[ \t]*[*_]*[ \t]*(?:(?P<sep>:|[-\u2013\u2014](?=\s))[ \t]*|(?=$))",
    re.IGNORECASE,
)
_CAPS_HEADER = re.compile(rf"^[ \t]*(?i:{_ALT})[ \t]+(?=[A-Z][a-z])")
_INLINE_HEADER = re.compile(rf"(?<=[.!?])[ \t]+(?:{_ALT})[ \t]*:[ \t]*", re.IGNORECASE)


def _header_name(match: re.Match) -> str:
    return next(name for name in _HEADERS if match.group(name) is not None)


def section_list(text: str) -> list[tuple[str, str]]:
    """Sections in document order as ``(name, body)``; untitled leading text is ``other``. Empty bodies are kept."""
    out: list[tuple[str, list[str]]] = [("other", [])]
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        m = _LINE_HEADER.match(line)
        if m is None:
            m = _CAPS_HEADER.match(line)
            if m is not None and not m.group(0).strip().isupper():
                m = None
        if m is not None:
            out.append((_header_name(m), []))
            line = line[m.end():]
        pos = 0
        for im in _INLINE_HEADER.finditer(line):
            out[-1][1].append(line[pos:im.start()])
            out.append((_header_name(im), []))
            pos = im.end()
        out[-1][1].append(line[pos:])
    result = [(name, "\n".join(lines).strip()) for name, lines in out]
    if not result[0][1]:
        result = result[1:]
    return result


def sections(text: str) -> dict[str, str]:
    """Split a free-text report into normalised sections ``{name: body}`` (first-appearance order).

    Repeated sections (two "Comment" blocks, "Conclusion" + "Summary") are joined with a newline. Text before
    the first header is ``other``; a report without any header is returned as ``{"other": text}``.
    """
    merged: dict[str, str] = {}
    for name, body in section_list(text):
        merged[name] = f"{merged[name]}\n{body}".strip() if name in merged else body
    return merged


# --- sentences -------------------------------------------------------------------------------------------------

# abbreviations that never end a sentence (compared lower-case, with their final dot)
_ABBREV = {
    "approx.", "appr.", "e.g.", "eg.", "i.e.", "ie.", "vs.", "v.", "dr.", "drs.", "mr.", "mrs.", "ms.", "prof.",
    "incl.", "cf.", "ca.", "c.", "fig.", "figs.", "resp.", "est.", "max.", "min.", "avg.", "y.o.", "yrs.", "st.",
    "ant.", "inf.", "lat.", "sept.", "post.", "mod.", "sig.", "pt.", "pts.", "wk.", "mo.", "al.", "et.",
}
# abbreviations that do not end a sentence when a number follows ("no. 3", "seg. 4")
_NUM_ABBREV = {"no.", "nr.", "nos.", "ref.", "seg.", "segs.", "p.", "pp.", "vol."}
_BULLET = re.compile(r"^[ \t]*(?:[-*\u2022\u00b7\u25aa\u25e6\u2023\u2013>]+|\(?\d{1,2}[.)]|\(?[a-h]\))[ \t]+")
_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_JOIN_WORDS = re.compile(r"(?:[,(\-/&]|\b(?:and|or|of|the|with|in|to|a|an|at|for|by|from|on|than|is|are|was|were))$",
                         re.IGNORECASE)


def _blocks(text: str) -> list[str]:
    """Join hard-wrapped lines; a line break ends a sentence unless the text plainly continues."""
    blocks: list[str] = []
    prev_blank = True
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").split("\n"):
        line = raw.strip()
        if not line:
            prev_blank = True
            continue
        cont = (not prev_blank and blocks and _BULLET.match(line) is None
                and (line[0].islower() or line[0] in "(<>%" or _JOIN_WORDS.search(blocks[-1]) is not None))
        if cont:
            blocks[-1] = f"{blocks[-1]} {line}"
        else:
            blocks.append(line)
        prev_blank = False
    return blocks


def _strip_marker(s: str) -> str:
    prev = None
    while prev != s:
        prev, s = s, _BULLET.sub("", s, count=1).strip()
    return s


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences.

    Survives abbreviations ("approx.", "e.g.", "i.e.", "vs.", "Dr.", "no. 3", "incl."), decimals ("55.5 %",
    "LVEF 0.55"), initials, numbered lists ("1. ...", "2) ..."), bullets and hard-wrapped lines. A sentence ends
    at ``.``/``!``/``?`` followed by whitespace and a non-lower-case character, and at a line break unless the
    next line starts lower-case or the line ends with a comma / connective. List markers are removed.
    """
    out: list[str] = []
    for block in _blocks(text):
        block = _strip_marker(block)
        start = 0
        for m in _END.finditer(block):
            end = m.end()
            rest = block[end:].lstrip()
            if rest and rest[0].islower():
                continue
            if "." in m.group(0) and not m.group(0).startswith(("..", ".!", ".?")):
                word = block[start:m.start()].split()[-1:] or [""]
                token = word[0].lower().lstrip("([\"'") + "."
                if token in _ABBREV or (token in _NUM_ABBREV and rest[:1].isdigit()):
                    continue
                if len(token) == 2 and token[0].isalpha() and word[0].isupper():  # initial "J."
                    continue
                if token[:-1].isdigit() and len(token) <= 3 and not block[start:m.start()].strip()[:-len(word[0])]:
                    continue  # inline list marker "2."
            piece = _strip_marker(block[start:end])
            if piece.strip(".!?\"') ]"):
                out.append(piece)
            start = end
        piece = _strip_marker(block[start:])
        if piece.strip(".!?\"') ]"):
            out.append(piece)
    return out
