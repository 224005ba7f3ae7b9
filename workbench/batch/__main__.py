"""``python -m workbench.batch ...`` (same as ``workbench batch ...``)."""

import sys

from .cli import main

sys.exit(main())
