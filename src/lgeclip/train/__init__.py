"""lgeclip.train layer (see docs/ARCHITECTURE.md)."""
