"""Loop core (LoopAnimate), no ComfyUI import: ALSS, SDSLC and FGSM layouts with Loop Conditioning's plan,
saliency, loop metrics. Frame anchoring itself is ../anchor."""
