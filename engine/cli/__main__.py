"""`python -m engine.cli`: the tagwatch command."""

import sys

from engine.cli.main import main

sys.exit(main())
