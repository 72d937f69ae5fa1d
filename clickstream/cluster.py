"""`python -m clickstream.cluster`: the command's home is `clickstream.runtime.cluster`."""

import sys

from clickstream.runtime.cluster import main

if __name__ == "__main__":
    sys.exit(main())
