"""Cutting the command after a wake word: the endpointer, and the session that holds its audio."""

import numpy as np
import pytest

from agent.daemon.command_capture import FRAME_S, Endpointer, Outcome
from agent.daemon.session import CommandSession, RecentAudio, State
from agent.settings import CommandCaptureSettings
from models.wake.detector import Detection

SR = 16_000
SETTINGS = CommandCaptureSettings(trailing_silence_s=0.7, max_s=10.0, no_speech_timeout_s=3.0)


def flags_for(spans: list[tuple[float, float]], total_s: float) -> np.ndarray:
    """Per-frame speech flags that are True inside the given spans (seconds)."""
    times = np.arange(int(round(total_s / FRAME_S))) * FRAME_S
    return np.any([(times >= s) & (times < e) for s, e in spans], axis=0)


def feed(endpointer: Endpointer, flags: np.ndarray, chunk: int) -> tuple[object, float]:
    """Push flags in chunks; (the cut, the decided time when it came)."""
    for start in range(0, flags.size, chunk):
        cut = endpointer.push(start, flags[start : start + chunk])
        if cut is not None:
            return cut, (start + chunk) * FRAME_S
    return None, flags.size * FRAME_S


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_the_command_ends_after_its_trailing_silence(chunk):
    flags = flags_for([(1.0, 1.6), (2.0, 3.0), (3.3, 4.2)], total_s=8.0)  # wake word, command
    endpointer = Endpointer(SETTINGS, wake_end_s=1.6)
    cut, decided_s = feed(endpointer, flags, chunk)
    assert cut.outcome is Outcome.ENDED
    assert cut.start_s == 1.6
    assert cut.end_s == pytest.approx(4.2, abs=FRAME_S)
    assert decided_s >= 4.2 + 0.7  # a pause shorter than the trailing silence did not end it
    assert decided_s < 4.2 + 0.7 + chunk * FRAME_S + 1e-9


def test_a_tail_of_the_wake_word_does_not_start_the_command():
    # The wake word's last frames leak past its estimated end, then nobody speaks.
    flags = flags_for([(1.0, 1.7)], total_s=6.0)
    cut, decided_s = feed(Endpointer(SETTINGS, wake_end_s=1.6), flags, 10)
    assert cut.outcome is Outcome.NO_SPEECH
    assert decided_s == pytest.approx(1.6 + SETTINGS.no_speech_timeout_s, abs=0.1)


def test_a_pause_after_the_wake_word_is_allowed_up_to_the_timeout():
    flags = flags_for([(1.0, 1.6), (4.0, 5.0)], total_s=8.0)
    cut, _ = feed(Endpointer(SETTINGS, wake_end_s=1.6), flags, 10)
    assert cut.outcome is Outcome.ENDED and cut.end_s == pytest.approx(5.0, abs=FRAME_S)


def test_endless_speech_is_cut_at_the_maximum_length():
    settings = CommandCaptureSettings(max_s=2.0)
    flags = flags_for([(0.0, 30.0)], total_s=30.0)
    cut, decided_s = feed(Endpointer(settings, wake_end_s=1.0), flags, 10)
    assert cut.outcome is Outcome.MAX_LENGTH
    assert cut.end_s == pytest.approx(3.0)
    assert decided_s == pytest.approx(3.0, abs=0.11)


def test_frames_before_the_wake_words_end_are_ignored():
    flags = flags_for([(0.0, 2.0)], total_s=5.0)  # speech only before the wake word ended
    cut, _ = feed(Endpointer(SETTINGS, wake_end_s=2.0), flags, 10)
    assert cut.outcome is Outcome.NO_SPEECH


def detection(end_s: float) -> Detection:
    return Detection("computer", 0.99, end_s - 0.6, end_s, end_s + 0.2)


def test_a_session_keeps_no_audio_from_before_the_wake_words_end():
    recent = RecentAudio(seconds=3.0)
    audio = np.arange(5 * SR, dtype=np.float32)  # sample value = its index: easy to check
    for start in range(0, audio.size, 1280):
        recent.add(start / SR, audio[start : start + 1280])
    session = CommandSession(detection(4.0), SETTINGS, recent.since(4.0))
    kept = session.utterance()
    assert kept[0] == 4 * SR  # the first sample after the wake word
    assert np.array_equal(kept, audio[4 * SR :])
    assert session.state is State.WOKEN


def test_the_pre_roll_reaches_back_exactly_that_far():
    settings = CommandCaptureSettings(pre_roll_s=0.5)
    recent = RecentAudio(seconds=3.5)
    audio = np.arange(5 * SR, dtype=np.float32)
    recent.add(0.0, audio)
    session = CommandSession(detection(4.0), settings, recent.since(3.5))
    assert session.utterance()[0] == 3.5 * SR
    assert session.utterance(end_s=4.5).size == SR  # 3.5 s to 4.5 s


def test_recent_audio_forgets_what_is_older_than_its_span():
    recent = RecentAudio(seconds=1.0)
    for k in range(30):
        recent.add(k * 0.1, np.zeros(1600, np.float32))
    assert recent.blocks[0][0] >= 2.9 - 1.0 - 1e-9
    assert recent.since(100.0) == []
