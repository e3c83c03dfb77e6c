"""``python -m recsys``: the trainer's command line."""

from .cli import main

raise SystemExit(main())
