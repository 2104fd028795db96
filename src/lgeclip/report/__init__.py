"""lgeclip.report layer (see docs/ARCHITECTURE.md)."""
