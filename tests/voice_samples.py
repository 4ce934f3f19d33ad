"""Test audio made at test time: real speech (espeak-ng for English, festival with
festvox-ru for Russian) and synthetic silence / tones, encoded like Telegram sends
them (OGG/Opus voice, MP4/AAC video notes) with PyAV, so no system ffmpeg is used."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

RATE = 48_000


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = (f"{tool} is not installed: apt-get install espeak-ng festival festvox-ru "
                   "(make test does this on a fresh machine)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def speak_english(text: str, wav: Path) -> Path:
    subprocess.run([_require("espeak-ng"), "-v", "en-us", "-s", "140", "-w", str(wav), text],
                   check=True, capture_output=True, timeout=60)
    return wav


def speak_russian(text: str, wav: Path) -> Path:
    subprocess.run([_require("text2wave"), "-eval", "(voice_msu_ru_nsh_clunits)", "-o", str(wav)],
                   input=text.encode("utf-8"), check=True, capture_output=True, timeout=60)
    return wav


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=rate)
        parts = [f.to_ndarray().reshape(-1) for frame in container.decode(stream) for f in resampler.resample(frame)]
    return np.concatenate(parts).astype(np.float32) / 32768.0, rate


def encode(samples: np.ndarray, rate: int, *, container: str = "ogg", codec: str = "libopus",
           out_rate: int = RATE, video: bool = False) -> bytes:
    """Mono float samples -> an encoded file (OGG/Opus by default; ``video=True``: MP4 video note)."""
    import av

    out = io.BytesIO()
    pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
    with av.open(out, "w", format=container) as dst:
        # Every stream is added before the first packet is written (the header).
        vstream = None
        if video:
            vstream = dst.add_stream("libx264", rate=10)
            vstream.width = vstream.height = 64
            vstream.pix_fmt = "yuv420p"
        astream = dst.add_stream(codec, rate=out_rate)
        assert isinstance(astream, av.AudioStream)
        astream.layout = "mono"
        if vstream is not None:
            for i in range(max(1, int(len(pcm) / rate * 10))):
                image = np.full((64, 64, 3), (i * 7) % 255, dtype=np.uint8)
                for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    dst.mux(packet)
            for packet in vstream.encode(None):
                dst.mux(packet)
        resampler = av.audio.resampler.AudioResampler(format=astream.format.name, layout="mono", rate=out_rate)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in astream.encode(chunk):
                dst.mux(packet)
        for packet in astream.encode(None):
            dst.mux(packet)
    return out.getvalue()


def speech_ogg(samples: np.ndarray, rate: int) -> bytes:
    return encode(samples, rate)


def silence(seconds: float, rate: int = 16_000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def with_padding(samples: np.ndarray, rate: int, *, before: float = 0.3, after: float = 0.5) -> np.ndarray:
    return np.concatenate([silence(before, rate), samples, silence(after, rate)])


@pytest.fixture(scope="session")
def spoken(tmp_path_factory):
    """``spoken(text, language)`` -> (OGG/Opus bytes, seconds): real synthetic speech, made once per session."""
    folder = tmp_path_factory.mktemp("speech")
    cache: dict[tuple[str, str], tuple[bytes, float]] = {}

    def say(text: str, language: str = "en") -> tuple[bytes, float]:
        key = (language, text)
        if key not in cache:
            wav = folder / f"clip{len(cache)}.wav"
            (speak_english if language == "en" else speak_russian)(text, wav)
            samples, rate = read_wav(wav)
            samples = with_padding(samples, rate)
            cache[key] = (speech_ogg(samples, rate), len(samples) / rate)
        return cache[key]

    return say
