"""lgeclip.phantom layer (see docs/ARCHITECTURE.md)."""
