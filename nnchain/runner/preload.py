"""Imported by a local Ray's workers before they take work (Ray's ``preload_python_modules``).

They start while the driver connects, so this costs no one any waiting; without it, the
first task on each worker waited ~0.1 s for the task's own module and its outputs 0.2 s
more for Ray's serializers of pydantic, starlette and pyarrow values (measured here).
"""

from __future__ import annotations

import contextlib
import importlib

import nnchain.runner.task  # noqa: F401 - the trial task, numpy and the engine

# What Ray imports when a process first serializes a value (ray.util.serialization_addons:
# its pydantic field types, starlette, pyarrow and pyarrow's JSON options).
_RAY_SERIALIZERS = ("ray._common.pydantic_compat", "pydantic.fields", "pydantic.v1.fields",
                    "starlette.datastructures", "ray._private.arrow_serialization", "pyarrow",
                    "pyarrow.json")

for _name in _RAY_SERIALIZERS:
    with contextlib.suppress(ImportError):  # another Ray may not have them: nothing to do
        importlib.import_module(_name)
