"""scripts/partition_trial.py runs end to end (a small size: the figures are for the README,
measured at 1,000,000 orders; this only proves the script still works)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_partition_trial_runs_and_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "partition_trial.py"), "3000", "6000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["rows_per_table"] == 4 * 3000
    assert set(result["lookups"]) == {
        "plain by order id",
        "partitioned by order id",
        "partitioned, bounded by the order's created_at",
    }
    assert result["partitions_used"] == 7  # 3,000 orders 6,000 s apart: 208 days, Jan-Jul
    # The bounded read lets PostgreSQL skip the months before the order at run time.
    bounded = result["lookups"]["partitioned, bounded by the order's created_at"]["plan"]
    assert "never executed" in bounded
    assert "never executed" not in result["lookups"]["partitioned by order id"]["plan"]
    assert result["retired_rows"] > 0
    assert set(result["insert_ms_per_row"]) == {"oe_plain", "oe_part"}
