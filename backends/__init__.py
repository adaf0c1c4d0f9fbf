"""Chip descriptions (targets) and device models. Imports only ``isa``."""
from nmc.backends.target import Target, TargetError, load_target, parse_target, preset_names

__all__ = ["Target", "TargetError", "load_target", "parse_target", "preset_names"]
