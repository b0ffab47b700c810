"""The ``--json`` output every command shares: sorted keys, two-space indent, a final newline.

Apart from :mod:`heads.cli.common` (which re-exports it) so that the commands the quick
command-line reader runs (:mod:`heads.cli.fast_argv`) need neither argparse nor the rest.
"""

from __future__ import annotations

import sys

__all__ = ["print_json"]


def print_json(obj: object) -> None:
    import json

    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
