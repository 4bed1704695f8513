"""The built-in strategies: importing this module registers each of them by name.

Owns nothing but the list; each strategy lives in the module of its family.
"""
