"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

from lgeclip.utils import acdc_root, emidec_root

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _data_or_skip(root, what: str, env: str, place: str):
    if root is None:
        pytest.skip(f"{what} not found (set {env} or place it at ../shared/data/{place})")
    return root


@pytest.fixture(scope="session")
def emidec_dir():
    """EMIDEC PNG folder, or skip when it is not on this machine."""
    return _data_or_skip(emidec_root(), "EMIDEC PNG data", "LGECLIP_EMIDEC", "emidec_png")


@pytest.fixture(scope="session")
def acdc_dir():
    """ACDC NIfTI folder, or skip when it is not on this machine."""
    return _data_or_skip(acdc_root(), "ACDC NIfTI data", "LGECLIP_ACDC", "acdc")
