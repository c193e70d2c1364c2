"""The Redis layer: the only package that sends Redis commands.

Connections (one Redis, a cluster, memory://), URLs, the translation of redis-py's errors,
the worker's lanes, the typed commands and the Lua scripts (lua/, one file per script, each
with a header its wrapper is checked against). Above it, code calls these functions; it
never calls a redis-py client itself.
"""
