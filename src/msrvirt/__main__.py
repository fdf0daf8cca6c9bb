"""`python -m msrvirt`."""

import sys

from msrvirt.cli import main

sys.exit(main())
