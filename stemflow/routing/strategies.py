"""The built-in strategies, loaded so that their `@register` decorators run.

Owns nothing but the list; the registry imports this module on first lookup.
"""

from stemflow.routing import baselines, multicast, unicast

BUILTIN_MODULES = (baselines, unicast, multicast)
