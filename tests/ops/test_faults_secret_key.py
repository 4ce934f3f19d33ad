"""Several processes starting at once on a new data dir (``supportbot webhook --workers 2`` beside
a worker, as bench/load.py starts them) all get the one generated secret key: before, they shared
a fixed temporary file name and the losers crashed at start (``FileNotFoundError`` on its
rename), or ran with different keys."""

from __future__ import annotations

import os
import subprocess
import sys

READ_KEY = """
import sys, time
from supportbot.config import Settings
start = float(sys.argv[1])
while time.time() < start:
    pass
print(Settings(_env_file=None, supportbot_data_dir=sys.argv[2]).secret_key())
"""


def test_processes_starting_together_share_one_generated_key(tmp_path):
    import time

    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    start = time.time() + 2.0  # every process spins until the same moment, then generates
    procs = [subprocess.Popen([sys.executable, "-c", READ_KEY, str(start), str(data_dir)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-500:] for _, err in results]
    keys = {out.strip() for out, _ in results}
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]  # no temporary file left behind
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
