"""SettingError: a value outside what a core accepts, named as the core knows it."""
from __future__ import annotations


class SettingError(ValueError):
    """A value outside a core's domain. `setting` is the name the core knows the value by, and the message starts
    with it ("cut_fraction must be 0 (use cut_step) or in (0, 1], got 1.5", "images: expected an IMAGE batch ...").
    A node whose input has another name raises `error.renamed(input_name)`; where the names are the same the error
    reaches the user as it is. A ValueError, so code that catches ValueError still does."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting

    def renamed(self, name: str) -> SettingError:
        """The same error naming `name` (a node's input) instead of the core's setting."""
        text = str(self)
        text = name + text[len(self.setting):] if text.startswith(self.setting) else f"{name}: {text}"
        return SettingError(name, text)


# ComfyUI names a node's error by its type's module and name (execution.full_type_name), and the pack's module path
# is where ComfyUI found its folder ("/opt/ComfyUI/custom_nodes/vcut.validation.settings"): users read
# "vcut.SettingError" instead.
SettingError.__module__ = "vcut"
