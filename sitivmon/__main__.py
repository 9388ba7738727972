"""`python -m sitivmon`: the command line (`sitivmon.app.cli`)."""

from sitivmon.app.cli import main

raise SystemExit(main())
