"""``python -m cli``: the ``centroid-retrieval`` command without the installed script."""

from cli.main import main

raise SystemExit(main())
