"""The security tests reuse the deployment tests' helpers (tests/deploy)."""

from __future__ import annotations

import sys
from pathlib import Path

DEPLOY = str(Path(__file__).resolve().parents[1] / "deploy")
if DEPLOY not in sys.path:
    sys.path.append(DEPLOY)
