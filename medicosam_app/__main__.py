"""``python -m medicosam_app <command>``: the command line of :mod:`medicosam_app.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
