"""``python -m torch_shard_interpret`` is the ``tsi`` command."""

from torch_shard_interpret.cli.main import main

raise SystemExit(main())
