"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

from lgeclip.utils import acdc_root, emidec_root

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def emidec_dir():
    """EMIDEC PNG folder, or skip when it is not on this machine."""
    root = emidec_root()
    if root is None:
        pytest.skip("EMIDEC PNG data not found (set LGECLIP_EMIDEC or place it at ../shared/data/emidec_png)")
    return root


@pytest.fixture(scope="session")
def acdc_dir():
    """ACDC NIfTI folder, or skip when it is not on this machine."""
    root = acdc_root()
    if root is None:
        pytest.skip("ACDC NIfTI data not found (set LGECLIP_ACDC or place it at ../shared/data/acdc)")
    return root
