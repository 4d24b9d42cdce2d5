"""``python -m activemint.cli``."""
import sys

from activemint.cli import main

sys.exit(main())
