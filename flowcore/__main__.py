"""`python -m flowcore {train,eval,sample,convert} ...`: see `flowcore.cli`."""

import sys

from flowcore.cli import main

if __name__ == "__main__":
    sys.exit(main())
