"""lgeclip.preprocess layer (see docs/ARCHITECTURE.md)."""
