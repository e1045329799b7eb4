"""`python -m spacekiosk` is the `spacekiosk` command."""

import sys

from spacekiosk.cli import main

sys.exit(main())
