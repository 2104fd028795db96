"""lgeclip.models layer (see docs/ARCHITECTURE.md)."""
