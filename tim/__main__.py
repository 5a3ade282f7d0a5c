"""`python -m tim ...` is the `tim` command; `accelerate launch -m tim predict ...` runs it in several processes."""
import sys

from tim.cli import main

sys.exit(main())
