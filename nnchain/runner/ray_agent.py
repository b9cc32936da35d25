"""Ray's dashboard agent for nnchain's local instance, without its module scan.

The raylet runs this in place of Ray's ``dashboard/agent.py`` (``cluster._lean_start``, on
the tested Ray only: ``cluster.fast_start``) and waits for the agent before it registers
its node. The stock agent imports every dashboard module package to look for agent
modules (~0.45 s of CPU here, while the rest of Ray starts on the same cores); an instance
private to one sweep, with no dashboard, uses none of them. The agent is otherwise Ray's
own, run as Ray runs it.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import ray.dashboard
from ray.dashboard import utils


def _no_modules(module_type) -> list:
    return []


if __name__ == "__main__":
    agent = Path(ray.dashboard.__file__).with_name("agent.py")
    sys.path[0] = str(agent.parent)  # as when Python runs Ray's agent.py itself
    utils.get_all_modules = _no_modules
    runpy.run_path(str(agent), run_name="__main__")
