"""`python -m clickstream.topics`: the command's home is `clickstream.tools.topics`."""

import sys

from clickstream.tools.topics import main

if __name__ == "__main__":
    sys.exit(main())
