"""UNet Feature Cache core (DeepCache for SVD), no ComfyUI import: which steps run the whole UNet and which run
partially with the kept feature, the limits of its settings, the MACs of a cached video and what one run did
(deepcache.py)."""
