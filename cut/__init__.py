"""VCUT core: cached one-token cross-attention, the guidance cut schedule, MAC/parameter accounting."""
