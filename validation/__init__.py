"""The cores' input checks, no ComfyUI import: SettingError, the one error a core raises for a value outside its
domain (its message starts with the setting's name; a node whose input has another name renames it), and the one
check of an IMAGE batch that every core and node uses (images.py). Every other package may import this one; it
imports none of them."""
from .images import describe, image_batch, same_size
from .settings import SettingError

__all__ = ["SettingError", "describe", "image_batch", "same_size"]
