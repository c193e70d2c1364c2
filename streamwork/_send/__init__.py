"""Sending: the write side of every send and publish — one plan, then sync or async I/O."""
