"""``python -m activemint ...``: the command line, also as torchrun's module (``torchrun ... -m activemint train``)."""
from activemint.cli import main

raise SystemExit(main())
