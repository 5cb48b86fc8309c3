"""Headless runner: ComfyUI workflows from the command line (run_workflow.py), and the UI -> API converter it
and the integration tests share. Nothing here imports ComfyUI at module level."""
from .convert import WorkflowError, input_specs, is_api_prompt, ui_to_api, widget_slots

__all__ = ["WorkflowError", "input_specs", "is_api_prompt", "ui_to_api", "widget_slots"]
