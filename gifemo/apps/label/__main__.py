"""``python -m gifemo.apps.label``: see :mod:`gifemo.apps.label`."""

import sys

from gifemo.apps.label import main

sys.exit(main())
