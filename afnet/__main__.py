"""``python -m afnet``: the ``afnet`` command."""
import sys

from afnet.cli import main

sys.exit(main())
