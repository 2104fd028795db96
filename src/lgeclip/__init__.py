"""lgeclip: learn myocardial scar detection on cardiac LGE MRI from report text, answer zero-shot.

Layers (each imports only earlier ones):
io -> report -> anatomy / preprocess -> synth -> data -> models -> train -> infer / eval -> cli.
`phantom` is a cohort generator that writes files the pipeline reads; it imports io and anatomy only.
"""

__version__ = "0.1.0"
