"""``python -m activemint``: the command line."""
import sys

from activemint.cli import main

sys.exit(main())
