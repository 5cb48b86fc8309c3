"""VCUT core: the one-token cross-attention stand-ins (attention.py), the guidance cut schedule and the one step
tracker (schedule.py), MAC/parameter accounting (accounting.py). The UNet Feature Cache is ../cache."""
