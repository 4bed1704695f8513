"""Placeholder package docstring; replaced by the emu implementation."""
