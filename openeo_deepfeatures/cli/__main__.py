"""``python -m openeo_deepfeatures.cli``: the ``deepfeatures`` command."""

import sys

from . import main

sys.exit(main())
