"""lgeclip.synth layer (see docs/ARCHITECTURE.md)."""
