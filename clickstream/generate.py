"""`python -m clickstream.generate` (a SPEC command): the CLI's home is `clickstream.tools.generate`."""

import sys

from clickstream.tools.generate import main

if __name__ == "__main__":
    sys.exit(main())
