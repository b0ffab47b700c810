"""``python3 -m heads.runtime``: the boot runtime started by the payload's /init.

The exit status tells /init what to do (see init.sh): 10 recovery shell, 11 power off.  An
unexpected exception is printed and becomes "power off": no traceback may leave the machine
in an unmeasured shell.
"""

from __future__ import annotations

import sys
import traceback

# First line from Python: the console shows when the interpreter is up, before the imports.
print("heads: python started", flush=True)

from heads.runtime.boot import EXIT_POWEROFF, main  # noqa: E402 - after the marker on purpose

if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:  # PID 1's companion: never let an exception escape unreported
        traceback.print_exc()
        print("heads: internal error in the boot runtime (this is a bug)", flush=True)
        sys.exit(EXIT_POWEROFF)
