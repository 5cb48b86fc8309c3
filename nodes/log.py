"""The pack's logger: every node, wrapper and the run layer write to the "vcut" logger (ComfyUI's console shows
WARNING and above; the runner's sweep collects the run reports from it). codec/storage.py, a core, names the same
logger itself."""
import logging

log = logging.getLogger("vcut")
