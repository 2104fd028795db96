"""lgeclip.preprocess layer (see docs/ARCHITECTURE.md §6): the invertible slice chain and the cache builder."""

from lgeclip.preprocess.cache import CacheRecord, build_cache, load_cached_slice, read_cache
from lgeclip.preprocess.chain import (
    ImplausibleSlice,
    PreprocessedSlice,
    SliceMaps,
    chain_matrix,
    forward_points,
    invert_image,
    invert_points,
    preprocess_slice,
)
from lgeclip.preprocess.config import PreprocessCfg

__all__ = [
    "CacheRecord", "ImplausibleSlice", "PreprocessCfg", "PreprocessedSlice", "SliceMaps", "build_cache",
    "chain_matrix", "forward_points", "invert_image", "invert_points", "load_cached_slice", "preprocess_slice",
    "read_cache",
]
