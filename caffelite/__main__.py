"""``python -m caffelite``: the command line."""

from caffelite.cli import main

raise SystemExit(main())
