"""``python -m stasis_app``: the same as the ``stasis-rcml`` command."""

from stasis_app.cli import main

raise SystemExit(main())
