import sys

from agentsft.cli import main

sys.exit(main())
