"""`python -m owlmetry` is the `owlmetry` command."""

import sys

from owlmetry.cli import main

sys.exit(main())
