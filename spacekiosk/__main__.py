"""`python -m spacekiosk` is the `spacekiosk` command."""

import sys

from spacekiosk.cli import main

if __name__ == "__main__":
    sys.exit(main())
