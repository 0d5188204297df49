"""`python -m obuilder_core.cli`: the same as the `obuilder` console script."""

import sys

from obuilder_core.cli import main

sys.exit(main())
