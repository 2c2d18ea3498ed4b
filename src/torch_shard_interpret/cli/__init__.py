"""The ``tsi`` command line. Each subcommand is a module with ``register(subparsers)`` and ``run(args)``."""
