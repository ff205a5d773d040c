import sys

from rl2bench.cli import main

# Guarded: worker processes started with "spawn" (the maze engines) import the main module again.
if __name__ == "__main__":
    sys.exit(main())
