"""lgeclip.eval layer (see docs/ARCHITECTURE.md)."""
