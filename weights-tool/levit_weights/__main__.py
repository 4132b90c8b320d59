"""`python -m levit_weights` == the `levit-weights` console script."""

import sys

from .cli import main

sys.exit(main())
