"""`python -m streamwork` runs the command line."""

from .cli import main

main()
