"""`python -m heads`."""

from heads.cli.main import main

raise SystemExit(main())
