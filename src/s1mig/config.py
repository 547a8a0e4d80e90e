"""Where things live. Every path and setting comes from the environment (S1MIG_*)
with a default that works from a clone of the repository."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from s1mig.errors import ConfigInvalid


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


# ----------------------------------------------------------------------------- landing limits
# Sized for a national drop (docs/landing.md, "Limits"): the first drop of a 15-million
# installation base holds a 1.3 GB installations file (82 bytes a row), a day of ~200,000
# attempts about 70 MB, and no record of the contract is longer than ~5 KB even at its
# field lengths' limits (64/256 characters, every character quoted twice).

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10
_UNITS = {"": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB, "g": GiB, "gb": GiB, "gib": GiB}


def _bytes_setting(name: str, default: int) -> int:
    """A size from the environment: a whole number of bytes or with a unit (64K, 512M, 4G;
    binary units: K = 1024)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d{1,15})\s*([A-Za-z]*)", text)
    if not m or m.group(2).lower() not in _UNITS or int(m.group(1)) <= 0:
        raise ConfigInvalid(f"{name} must be a size in bytes such as 65536, 64K, 512M or 4G, not {text[:40]!r}")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _count_setting(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not re.fullmatch(r"\d{1,15}", text):
        raise ConfigInvalid(f"{name} must be a whole number, not {text[:40]!r}")
    return int(text)


def land_max_file_bytes() -> int:
    """S1MIG_LAND_MAX_FILE_BYTES (default 4G): the most bytes one extract may hold, as
    delivered and once decompressed. A gzip bomb stops here."""
    return _bytes_setting("S1MIG_LAND_MAX_FILE_BYTES", 4 * GiB)


def land_max_line_bytes() -> int:
    """S1MIG_LAND_MAX_LINE_BYTES (default 64K): the longest record (one line, or several when
    a quoted field holds line breaks). A file without line feeds stops here."""
    return _bytes_setting("S1MIG_LAND_MAX_LINE_BYTES", 64 * KiB)


def land_max_multiline_records() -> int:
    """S1MIG_LAND_MAX_MULTILINE_RECORDS (default 10000): the most records of one file that
    span several lines (a quoted field holding a line break)."""
    return _count_setting("S1MIG_LAND_MAX_MULTILINE_RECORDS", 10_000)


def land_max_manifest_bytes() -> int:
    """S1MIG_LAND_MAX_MANIFEST_BYTES (default 1M): the largest manifest.json (a real one
    is under 2 KB)."""
    return _bytes_setting("S1MIG_LAND_MAX_MANIFEST_BYTES", MiB)


def raw_keep_drops() -> int:
    """S1MIG_RAW_KEEP_DROPS (default 7, at least 1): the newest drop dates whose raw rows stay
    as rows; older ones are archived compressed once staged (s1mig/raw_archive.py)."""
    keep = _count_setting("S1MIG_RAW_KEEP_DROPS", 7)
    if keep < 1:
        raise ConfigInvalid("S1MIG_RAW_KEEP_DROPS must be at least 1 (the newest drop stays as rows)")
    return keep


# S1MIG_FIRST_DROP=any: whichever date lands first on an empty warehouse is its first drop
# (tests and benchmarks, which build many throw-away warehouses).
FIRST_DROP_ANY = "any"


def first_drop() -> dt.date | str | None:
    """S1MIG_FIRST_DROP: the date chosen as the warehouse's first drop (it carries all history
    before it); FIRST_DROP_ANY ("any") to take whichever date lands first; None when not
    configured (an empty warehouse then refuses a landing that does not say --first)."""
    text = os.environ.get("S1MIG_FIRST_DROP", "").strip()
    if not text:
        return None
    if text == FIRST_DROP_ANY:
        return FIRST_DROP_ANY
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ConfigInvalid(f"S1MIG_FIRST_DROP must be a date (YYYY-MM-DD) or 'any', not {text[:40]!r}")
