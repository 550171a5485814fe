"""The example wedding platform, run by file path:

    python examples/wedding/platform.py --host 127.0.0.1 \\
        --instances booking=1,venue=2,catering=1,photographer=2,payment=1,notification=1 \\
        [--base-port 0]

Its code lives in the sibling ``wedding_*`` modules and ``manifest``, imported by
plain name from this folder; it never imports orchcore (it stands for services
orch does not own). See ``wedding_runner`` for the output and the exit codes.
"""

import importlib
import os
import sys


def _import_siblings_without_shadowing_stdlib() -> None:
    """Put this folder first on sys.path, after loading the standard ``platform``.

    Python runs a script with its folder first on sys.path, where this file's
    name would shadow the standard library's ``platform`` module that uuid,
    uvicorn and others import. Loading the real one before the folder comes back
    caches it in sys.modules, so later imports get it.
    """
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    importlib.import_module("platform")
    sys.path.insert(0, here)


if __name__ == "__main__":
    _import_siblings_without_shadowing_stdlib()
    from wedding_runner import main

    sys.exit(main())
