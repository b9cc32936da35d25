"""The app ``nnchain ui`` serves: MLflow's own server plus one page, ``START_PATH``.

MLflow 3.17's UI opens every experiment on its GenAI overview unless the browser chose
"Model training" on the sidebar's switch: the choice kept in the browser's localStorage
decides, not the experiment's ``mlflow.experimentKind`` tag (the UI reads that only with
the switch turned off, and 3.17 has it on). The start page makes the choice for a browser
that has none yet (a later click on the switch wins), then goes on to the experiments
list, or with ``?experiment=ID`` to that experiment's runs table (``nnchain ui SWEEP``).
``mlflow server --app-name nnchain`` finds ``create_app`` through the ``mlflow.app``
entry point (pyproject.toml).

The key and its value are the UI's own, read from 3.17.2 in a browser: a UI that keys its
choice otherwise ignores them (experiments then open as that UI decides), which
tests/cli/test_ui_browser.py catches.
"""

from __future__ import annotations

import json

APP_NAME = "nnchain"  # the mlflow.app entry point's name
START_PATH = "/nnchain"


def start_url(base: str, experiment_id: str | None = None) -> str:
    """The start page's address, going on to ``experiment_id``'s runs when given."""
    return base + START_PATH + (f"?experiment={experiment_id}" if experiment_id else "")

# where MLflow 3.17's UI keeps the switch's choice, and the value it writes for "Model training"
CHOICE_KEY = "mlflow.workflowType_v1"
MODEL_TRAINING = json.dumps("machine_learning")  # the UI stores it JSON-encoded

START_PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nnchain: MLflow UI</title>
<script>
try {{
  if (localStorage.getItem({json.dumps(CHOICE_KEY)}) === null) {{
    localStorage.setItem({json.dumps(CHOICE_KEY)}, {json.dumps(MODEL_TRAINING)});
  }}
}} catch (e) {{}}
var experiment = new URLSearchParams(location.search).get("experiment");
location.replace(experiment && /^[0-9A-Za-z_-]{{1,64}}$/.test(experiment)
                 ? "./#/experiments/" + experiment + "/runs" : "./#/experiments");
</script></head>
<body><a href="./#/experiments">MLflow experiments</a></body></html>
"""


def start_page() -> tuple[str, int, dict[str, str]]:
    return START_PAGE, 200, {"Content-Type": "text/html; charset=utf-8",
                             "Cache-Control": "no-store"}


def create_app():
    """MLflow's ASGI app (FastAPI around its Flask app, as ``mlflow server`` runs it under
    uvicorn) with the start page added to the Flask app, which serves every other page."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    if "nnchain_start" not in flask_app.view_functions:
        flask_app.add_url_rule(START_PATH, "nnchain_start", start_page)
    return create_fastapi_app(flask_app)
