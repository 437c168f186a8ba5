import sys

from hybridff.cli import main

sys.exit(main())
