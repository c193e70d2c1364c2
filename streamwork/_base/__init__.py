"""The bottom layer: pure code with no I/O — the wire format, key names, handler options,
settings, the message envelope, log formatting, trace context and in-process metrics.

It imports nothing of streamwork but `streamwork.errors`; every other layer may import it.
"""
