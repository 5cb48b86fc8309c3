"""Frame anchoring core (STIV frame replacement, training-free on SVD), no ComfyUI import: the math (anchoring.py),
the plans that STIV Frame Replace and Video Extend attach (plans.py; Loop Conditioning's plan, in ../loop, is an
AnchorPlan too). Joining the decoded segments of Video Extend is ../video/segments.py."""
