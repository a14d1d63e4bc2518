import sys

from zero1to3.cli import main

sys.exit(main())
