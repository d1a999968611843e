"""``python -m scr_core`` is the ``scr`` command."""

import sys

from .cli.main import main

sys.exit(main())
