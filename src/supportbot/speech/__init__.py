"""Speech to text for voice messages: a ``Transcriber`` protocol, faster-whisper behind it,
in-process audio decoding, and a bounded worker pool.

Importing this package is cheap: faster-whisper, CTranslate2 and PyAV load on first use.
"""

from supportbot.speech.audio import AudioError, CorruptAudio, NotAudio, TooLong
from supportbot.speech.queue import QueueFull, TranscriptionQueue
from supportbot.speech.transcriber import (
    FasterWhisperTranscriber,
    Transcriber,
    Transcript,
    build_transcriber,
    choose_language,
)

__all__ = [
    "AudioError",
    "CorruptAudio",
    "FasterWhisperTranscriber",
    "NotAudio",
    "QueueFull",
    "TooLong",
    "Transcriber",
    "Transcript",
    "TranscriptionQueue",
    "build_transcriber",
    "choose_language",
]
