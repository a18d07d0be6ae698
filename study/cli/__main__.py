"""`python -m study.cli` runs the `maskvae` command (what the tests and `ray job submit` call)."""
import sys

from study.cli import main

sys.exit(main())
