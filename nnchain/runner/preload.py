"""Imported by a local Ray's workers before they take work (Ray's ``preload_python_modules``,
a private ``_system_config`` key: on the tested Ray only, ``cluster.fast_start``).

- The trial task's module (numpy and the engine) is imported before the first task
  arrives, which would otherwise wait ~0.1 s for it.
- Ray's serializers for pydantic, starlette and Arrow values are registered only if the
  worker has imported those libraries. Ray imports all three when a worker first
  serializes anything (0.16 s of a worker's CPU here, while every worker of the instance
  boots at once on the same cores), and nnchain's tasks pass none of their types.
"""

from __future__ import annotations

import sys

import nnchain.runner.task  # noqa: F401 - the trial task, numpy and the engine

# The libraries whose values Ray's serialization_addons.apply registers serializers for.
_ADDON_LIBRARIES = ("pydantic", "starlette", "pyarrow")


def _if_imported(apply):
    def apply_if_imported(context) -> None:
        if any(name in sys.modules for name in _ADDON_LIBRARIES):
            apply(context)

    return apply_if_imported


try:
    from ray.util import serialization_addons
except ImportError:  # another Ray: it serializes as it always does
    pass
else:
    serialization_addons.apply = _if_imported(serialization_addons.apply)
