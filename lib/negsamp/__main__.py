"""Allow ``python -m negsamp``."""

import sys

from .cli import main

sys.exit(main())
