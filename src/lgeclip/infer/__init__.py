"""lgeclip.infer layer (see docs/ARCHITECTURE.md)."""
