"""Speech to text behind one small protocol, with a local faster-whisper implementation.

The constructor only stores configuration; the model loads on first use, once per
process (``assembly.default_transcriber()``), and ``transcribe`` is a blocking call that the
bot runs in its worker pool (:mod:`supportbot.speech.queue`), never on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from supportbot.speech.audio import SAMPLE_RATE, AudioSource, decode, is_silent

if TYPE_CHECKING:
    from supportbot.config import SpeechSettings

log = logging.getLogger(__name__)

#: The customer's Telegram language wins over detection among the configured
#: languages unless another one is at least this likely. Whisper base often
#: confuses Ukrainian and Russian on short clips; the app language is a good prior.
HINT_OVERRIDE_PROBABILITY = 0.7


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    #: Seconds of audio decoded.
    duration: float
    #: Decoding plus transcription, in this worker (not the time spent queued).
    elapsed_ms: int

    @property
    def empty(self) -> bool:
        return not any(ch.isalnum() for ch in self.text)


@runtime_checkable
class Transcriber(Protocol):
    name: str

    def transcribe(
        self, audio: AudioSource, *, language_hint: str | None = None,
        declared_seconds: float | None = None,
    ) -> Transcript:
        """Blocking. Raises :class:`~supportbot.speech.audio.AudioError` subclasses on bad input."""


def choose_language(
    probabilities: Mapping[str, float], allowed: Sequence[str], hint: str | None
) -> tuple[str, float]:
    """Pick a language among ``allowed`` only, never any of Whisper's other 96.

    The model's probabilities are renormalised over the allowed languages; the hint
    (the customer's Telegram language, when allowed) wins unless detection is sure
    of another allowed language.
    """
    scores = {code: max(0.0, float(probabilities.get(code, 0.0))) for code in allowed}
    total = sum(scores.values())
    scores = {c: (p / total if total > 0 else 1.0 / len(scores)) for c, p in scores.items()}
    best = max(allowed, key=lambda c: scores[c])
    if hint in scores and best != hint and scores[best] < HINT_OVERRIDE_PROBABILITY:
        best = hint
    return best, scores[best]


def normalise_hint(language_code: str | None, allowed: Sequence[str]) -> str | None:
    """Telegram's ``language_code`` (``uk``, ``ru-RU``...) -> an allowed speech language or None."""
    code = (language_code or "").lower().replace("_", "-").split("-", 1)[0]
    return code if code in allowed else None


#: Audio kept after the speech in a shortened encoder window (100 frames = 1 s).
WINDOW_TAIL_FRAMES = 100


def short_window(features: np.ndarray, tail: int = WINDOW_TAIL_FRAMES) -> np.ndarray:
    """Cut the zero padding that ``pad_or_trim`` adds after the speech, keeping ``tail`` frames.

    Whisper's encoder always gets 30 s (3,000 frames); a 5 s voice message is
    mostly padding, and the encoder is most of its cost. CTranslate2 accepts
    shorter windows (OpenNMT/CTranslate2#1446); 1 s of padding after the speech
    keeps transcripts word for word on our English and Russian clips
    (``bench/speech.py``). The log-Mel of real audio, silence included, is never
    exactly zero, so only the padding is cut. The length stays even (the
    encoder's convolution has stride 2).
    """
    frames = features.shape[-1]
    flat = features.reshape(-1, frames)
    filled = np.flatnonzero(np.any(flat != 0, axis=0))
    keep = min(frames, (int(filled[-1]) + 1 if filled.size else 0) + tail)
    keep = max(2, keep + keep % 2)
    return features if keep >= frames else features[..., :keep]


def _model_class():
    from faster_whisper import WhisperModel

    class ReusingWhisperModel(WhisperModel):
        """Shortened encoder windows, and one encoder pass shared by language detection
        and the first decoding window.

        faster-whisper 1.2 encodes the first 30 s twice when it also detects the
        language, and the encoder is most of the cost of a short voice message.
        The remembered output is per thread and used once.
        """

        short_windows = True

        def _window(self, features: np.ndarray) -> np.ndarray:
            return short_window(features) if self.short_windows else features

        def encode_and_remember(self, features: np.ndarray):
            """Encode a window and keep the output for this thread's next :meth:`encode` of it."""
            features = self._window(features)
            output = super().encode(features)
            self._memo.value = (features, output)
            return output

        def encode(self, features: np.ndarray):
            features = self._window(features)
            memo = getattr(self._memo, "value", None)
            if memo is not None:
                self._memo.value = None
                window, output = memo
                if window.shape == features.shape and np.array_equal(window, features):
                    self.reused_encodings += 1
                    return output
            return super().encode(features)

    return ReusingWhisperModel


class FasterWhisperTranscriber:
    """Whisper through CTranslate2 (int8 on CPU by default)."""

    def __init__(
        self, model: str = "base", *, models_dir: Path, compute_type: str = "int8",
        beam_size: int = 5, threads: int = 2, workers: int = 1,
        languages: Sequence[str] = ("uk", "ru", "en"), max_seconds: float = 120,
        short_windows: bool = True,
    ) -> None:
        self.name = f"faster-whisper/{model}"
        self.model_ref = model
        self.models_dir = models_dir
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.threads = threads
        self.workers = workers
        self.languages = tuple(languages)
        self.max_seconds = max_seconds
        #: Encode only the speech (plus 1 s), not Whisper's full 30 s window: see :func:`short_window`.
        self.short_windows = short_windows
        self.load_seconds: float | None = None
        self._model = None
        self._lock = threading.Lock()

    def load(self):
        """Load the model (once); safe to call from several threads."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                from supportbot.background import run_in_background
                from supportbot.speech.model_files import resolve_model

                started = time.perf_counter()
                # Joining the bundled model (first run) must not slow anyone's answers.
                path = run_in_background(resolve_model, self.model_ref, self.models_dir, name="whisper-join")
                model = _model_class()(
                    path, device="cpu", compute_type=self.compute_type,
                    cpu_threads=self.threads, num_workers=self.workers,
                )
                model._memo = threading.local()
                model.short_windows = self.short_windows
                model.reused_encodings = 0
                unknown = [c for c in self.languages if c not in model.supported_languages]
                if unknown:
                    raise ValueError(f"SPEECH_LANGUAGES: {self.name} does not know {', '.join(unknown)}")
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s in %.1f s", self.name, self.load_seconds)
                self._model = model
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def transcribe(
        self, audio: AudioSource, *, language_hint: str | None = None,
        declared_seconds: float | None = None, beam_size: int | None = None,
    ) -> Transcript:
        started = time.perf_counter()
        hint = normalise_hint(language_hint, self.languages)
        decoded = decode(audio, max_seconds=self.max_seconds, declared_seconds=declared_seconds)

        def result(text: str, language: str, probability: float) -> Transcript:
            return Transcript(text=text, language=language, language_probability=round(probability, 4),
                              duration=round(decoded.seconds, 2),
                              elapsed_ms=int((time.perf_counter() - started) * 1000))

        if is_silent(decoded.samples):
            return result("", hint or "", 0.0)
        model = self.load()
        speech = self._speech_only(decoded.samples)
        if speech.size == 0:
            return result("", hint or "", 0.0)
        language, probability = self._language(model, speech, hint)
        segments, _info = model.transcribe(
            speech, language=language, beam_size=beam_size or self.beam_size, vad_filter=False,
            temperature=(0.0, 0.4, 0.8), condition_on_previous_text=False,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return result(text, language, probability)

    @staticmethod
    def _speech_only(samples: np.ndarray) -> np.ndarray:
        """Silero VAD (bundled with faster-whisper): drop silence, keep speech with padding.

        Silence otherwise makes Whisper invent text ("Thank you.", "Продолжение следует...").
        """
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        spans = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=500), SAMPLE_RATE)
        if not spans:
            return np.zeros(0, np.float32)
        chunks, _ = collect_chunks(samples, spans, SAMPLE_RATE)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _language(self, model, speech: np.ndarray, hint: str | None) -> tuple[str, float]:
        if len(self.languages) == 1:
            return self.languages[0], 1.0
        from faster_whisper.audio import pad_or_trim

        features = model.feature_extractor(speech)
        # Exactly the first window transcribe() will encode, so the output is reused.
        frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
        output = model.encode_and_remember(pad_or_trim(features[:, :frames]))
        ranked = model.model.detect_language(output)[0]
        probabilities = {token[2:-2]: prob for token, prob in ranked}
        return choose_language(probabilities, self.languages, hint)


def build_transcriber(speech: SpeechSettings, *, models_dir: Path) -> FasterWhisperTranscriber:
    """The transcriber the settings describe (not loaded: that happens on first use)."""
    return FasterWhisperTranscriber(
        speech.model, models_dir=models_dir, compute_type=speech.compute_type,
        beam_size=speech.beam_size, threads=speech.threads, workers=speech.concurrency,
        languages=speech.languages, max_seconds=speech.max_seconds, short_windows=speech.short_windows,
    )
