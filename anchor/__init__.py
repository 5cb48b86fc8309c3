"""Frame anchoring core (STIV frame replacement, training-free on SVD), no ComfyUI import: the math (anchoring.py),
the plans that STIV Frame Replace, Video Extend and Loop Conditioning attach (plans.py), and the join of
overlapping decoded segments (segments.py)."""
