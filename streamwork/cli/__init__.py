"""The `streamwork` command line: one module per command group, added to the group in
main.py. Thin: parse, call the layers below, print."""

from .main import main

__all__ = ["main"]
