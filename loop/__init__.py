"""Loop and frame conditioning core: ALSS, SDSLC, FGSM, frame anchoring, saliency, loop metrics."""
