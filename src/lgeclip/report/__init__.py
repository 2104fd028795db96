"""Report reading: sections, sentences, LGE sentence extraction and LGE status (see docs/ARCHITECTURE.md)."""

from lgeclip.report.lge import extract_lge_sentences, lge_status, sentence_status
from lgeclip.report.sections import SECTION_NAMES, section_list, sections, split_sentences

__all__ = [
    "SECTION_NAMES",
    "extract_lge_sentences",
    "lge_status",
    "section_list",
    "sections",
    "sentence_status",
    "split_sentences",
]
