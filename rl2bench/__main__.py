import sys

from rl2bench.cli import main

sys.exit(main())
