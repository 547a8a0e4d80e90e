"""Where things live. Every path and setting comes from the environment (S1MIG_*)
with a default that works from a clone of the repository."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The repository root holding dags/, dbt_project/ and expectations/."""
    env = os.environ.get("S1MIG_PROJECT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def home() -> Path:
    """$S1MIG_HOME (default ./.s1mig): embedded database, Airflow home, GX results, logs."""
    path = Path(os.environ.get("S1MIG_HOME", ".s1mig")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def dbt_project_dir() -> Path:
    return project_dir() / "dbt_project"


def dags_dir() -> Path:
    return project_dir() / "dags"


def landing_dir() -> Path:
    return Path(os.environ.get("S1MIG_LANDING_DIR", str(home() / "landing"))).resolve()


def export_dir() -> Path:
    return Path(os.environ.get("S1MIG_EXPORT_DIR", str(home() / "exports"))).resolve()
