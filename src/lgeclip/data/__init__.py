"""Datasets that turn cached slices into training items (see docs/ARCHITECTURE.md §8)."""
