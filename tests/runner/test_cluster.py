"""Starting Ray: a local instance without the API server and monitors, an agent without
dashboard modules, its workers preloaded (without Ray's serializers for libraries they
never see), Ray's hooks put back afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from nnchain.runner import cluster

LOCAL_START = """
import glob, json, os, sys
import ray
from ray._private import node, services, utils
from nnchain.runner import cluster

def hooks():
    return (node.Node.start_api_server, node.Node.start_monitor, node.Node.start_log_monitor,
            services.get_node, services.start_ray_process, utils.get_dashboard_dependency_error)


before = hooks()
resources = cluster.connect(None, num_cpus=1)

@ray.remote
def worker():
    addons = [name for name in ("pydantic", "starlette", "pyarrow") if name in sys.modules]
    return os.getpid(), cluster.PRELOAD in sys.modules, addons

started = ray._private.worker.global_worker.node.all_processes
session = ray._private.worker.global_worker.node.get_session_dir_path()
agent_ports = [open(name).read().strip() for name in
               glob.glob(os.path.join(session, "*_port_*")) if "dashboard_agent_listen" in name
               or "metrics_agent" in name]
agent_log = open(os.path.join(session, "logs", "dashboard_agent.log")).read()
from ray._raylet import Config
retry = [Config.raylet_client_connect_timeout_milliseconds(),
         Config.raylet_client_num_connect_attempts()]
report = {"cpus": resources.get("CPU"), "processes": sorted(started), "retry": retry,
          "worker": ray.get(worker.remote()), "driver_pid": os.getpid(), "agent_ports": agent_ports,
          "hooks_back": hooks() == before,
          "agent_modules": [line.split("-- ")[-1] for line in agent_log.splitlines()
                            if "Loaded" in line and "modules" in line]}
cluster.shutdown()
print(json.dumps(report))
"""


def _local_start(**env_vars: str) -> tuple[dict, str]:
    """LOCAL_START's report and stderr, in a process of its own."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **env_vars)
    env.pop("RAY_ADDRESS", None)
    if not env_vars:
        env.pop("NNCHAIN_PLAIN_RAY", None)
    done = subprocess.run([sys.executable, "-c", LOCAL_START], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_local_start_runs_tasks_on_preloaded_workers_lean():
    report, stderr = _local_start()
    assert "plainly" not in stderr
    assert report["cpus"] == 1.0
    worker_pid, preloaded, addon_libraries = report["worker"]
    assert worker_pid != report["driver_pid"]  # a worker process answered
    assert preloaded  # imported before the worker took the task
    # it took its task and returned its result without Ray importing these for serializers
    assert addon_libraries == []
    assert not {"dashboard", "monitor", "log_monitor"} & set(report["processes"])
    assert report["agent_ports"] == ["-1", "-1"]  # a minimal agent: no HTTP, no metrics server
    # the raylet ran nnchain's agent: Ray's own, without the dashboard's module scan (Ray's
    # agent loads 7 modules here, minimal as it is)
    assert report["agent_modules"] == ["Loaded 0 modules."]
    assert {"gcs_server", "raylet"} <= set(report["processes"])
    assert report["hooks_back"]
    assert report["retry"] == [100, 100]  # Ray's 1 s retry, 10 times, made 0.1 s, 100 times


def test_nnchain_plain_ray_starts_ray_as_ray_does():
    """Every private hook off: Ray's own processes, agent, retries and workers."""
    report, stderr = _local_start(NNCHAIN_PLAIN_RAY="1")
    assert stderr.count("nnchain: NNCHAIN_PLAIN_RAY=1: starting Ray plainly") == 1
    assert report["cpus"] == 1.0
    worker_pid, preloaded, _ = report["worker"]
    assert worker_pid != report["driver_pid"] and not preloaded
    assert {"gcs_server", "raylet", "dashboard", "monitor", "log_monitor"} <= \
        set(report["processes"])
    assert report["agent_modules"] != ["Loaded 0 modules."]  # Ray's agent, not nnchain's
    assert report["retry"] == [1000, 10]  # Ray's own
    assert report["hooks_back"]


def test_wait_registered_sees_the_node_and_gives_up_on_an_unknown_one(ray_local):
    import ray

    gcs = ray.get_runtime_context().gcs_address
    node_id = ray.get_runtime_context().get_node_id()
    started = time.monotonic()
    cluster._wait_registered(gcs, node_id, timeout=5.0)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    cluster._wait_registered(gcs, "ab" * 28, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
