"""`python -m streamwork` runs the command line."""

from .cli import main

if __name__ == "__main__":  # not when re-imported by a spawned worker process
    main()
