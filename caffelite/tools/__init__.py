"""The subcommands of ``caffelite`` (one module each: ``add_parser(subparsers)`` and ``run(args)``)."""
