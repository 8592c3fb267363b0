"""``python -m typedstore.demo``: run the demo (see :mod:`typedstore.demo`)."""

import sys

from typedstore.demo import main

sys.exit(main())
