"""``python -m gifemo.apps.collect ARGS`` = ``python -m gifemo collect ARGS``."""

from gifemo.apps.collect import main

raise SystemExit(main())
