"""Placeholder package docstring; replaced by the analysis implementation."""
