"""VCUT core: the one-token cross-attention broadcast, the guidance cut schedule, MAC/parameter accounting."""
