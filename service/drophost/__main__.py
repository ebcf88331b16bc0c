from __future__ import annotations

from drophost.cli import main

raise SystemExit(main())
