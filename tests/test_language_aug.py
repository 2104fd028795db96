"""Language augmentation: rule-based rewordings keep what the text supervision reads (presence / absence, levels,
walls) and vary the words; training captions use them only when enabled."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lgeclip.report.augment import augment_sentence
from lgeclip.report.levels import sentence_levels
from lgeclip.report.lge import sentence_status

SENTENCES = [
    "There is >50% transmural late gadolinium enhancement of the basal and mid inferolateral and anterolateral "
    "walls, the mid anterior and inferior walls and the apical lateral segment, in keeping with previous "
    "myocardial infarction.",
    "A subendocardial (<50 %) infarct is present in the basal inferior wall.",
    "Non-transmural (<50% of wall thickness) LGE involves the mid anteroseptal wall.",
    "Subepicardial LGE of the basal to mid inferolateral wall, consistent with myocarditis.",
    "No LGE.",
    "There is no hyperenhancement to suggest prior infarction.",
    "Microvascular obstruction is seen.",
    "Late enhancement of the basal anteroseptal and inferoseptal walls is predominantly transmural (>50%).",
]
WALLS = re.compile(r"\b(antero|infero)-?(septal|lateral)\b|\b(anterior|inferior|septal|lateral)\b", re.IGNORECASE)


def _walls(text: str) -> list[str]:
    return sorted(m.group(0).lower().replace("-", "") for m in WALLS.finditer(text))


@pytest.mark.parametrize("sentence", SENTENCES)
def test_rewordings_keep_status_levels_and_walls(sentence):
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        new = augment_sentence(sentence, rng)
        seen.add(new)
        assert sentence_status(new) == sentence_status(sentence), new
        assert sentence_levels(new) == sentence_levels(sentence), new
        assert _walls(new) == _walls(sentence), new
        assert new[:1].isupper() and new.endswith(".")
    assert len(seen) >= 2  # the words do vary


def test_rules_by_hand():
    rng = np.random.default_rng(0)
    outs = {augment_sentence("A subendocardial (<50 %) infarct, in keeping with previous myocardial infarction.",
                             rng, p_rule=1.0) for _ in range(60)}
    # clause moved to the front, number and spelling families drawn from
    assert all(o.startswith("In keeping with previous") for o in outs)
    assert any("less than 50" in o for o in outs) and any("under 50" in o for o in outs)
    assert any("sub-endocardial" in o for o in outs) and any(" MI, " in o for o in outs)
    # p_rule = 0: unchanged
    assert augment_sentence(SENTENCES[0], rng, p_rule=0.0) == SENTENCES[0]
    # abbreviations keep their capitals; a sentence start stays capitalised
    lge = {augment_sentence("LGE of the basal inferior wall.", rng, p_rule=1.0) for _ in range(60)}
    assert "LGE of the basal inferior wall." in lge and "Late gadolinium enhancement of the basal inferior wall." in lge
