"""Voice-activity detection: boundaries of speech placed in noise, silence, and chunking."""

import numpy as np
import pytest

from agent.paths import DEMO_AUDIO
from dsp.audio import load_audio
from dsp.constants import SAMPLE_RATE_HZ
from dsp.vad import (
    FRAME_SAMPLES,
    SILENCE_DBFS,
    VoiceActivity,
    band_levels_dbfs,
    frame_levels_dbfs,
    noise_floor_dbfs,
    speech_flags,
    speech_segments,
    trim_to_speech,
)
from models.speech.augment import apply_gain, colored_noise
from models.speech.dataset import trim_silence
from tests.conftest import tone

SR = SAMPLE_RATE_HZ
SPEECH_DBFS = -25.0
BOUNDARY_TOLERANCE_S = 0.05 + 1e-9  # boundaries are multiples of 10 ms, in floating point
PLACED_AT_S = (1.5, 4.5)


def _rms_dbfs(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def phrases() -> list[np.ndarray]:
    """Synthesized phrases, trimmed to where they are within 40 dB of their loudest 10 ms."""
    from models.speech.synth import Rendition, Voice, render

    texts = [("hey computer", "en-us"), ("seven", "en-gb+f3"), ("okay mirror", "en-gb-scotland")]
    return [trim_silence(render(Rendition(t, Voice("espeak-ng", v)))) for t, v in texts]


def _in_noise(speech: list[np.ndarray], snr_db: float, seed: int) -> tuple[np.ndarray, list]:
    """Speech at `PLACED_AT_S` in 8 s of white noise ``snr_db`` below the speech's level."""
    rng = np.random.default_rng(seed)
    audio = apply_gain(rng.standard_normal(8 * SR).astype(np.float32), SPEECH_DBFS - snr_db)
    truth = []
    for clip, at_s in zip(speech, PLACED_AT_S, strict=True):
        clip = apply_gain(clip, SPEECH_DBFS - _rms_dbfs(clip))
        start = int(at_s * SR)
        audio[start : start + clip.size] += clip
        truth.append((at_s, at_s + clip.size / SR))
    return audio, truth


@pytest.mark.parametrize("snr_db", [30.0, 20.0, 15.0])
@pytest.mark.parametrize("which", [(0, 1), (2, 0)])
def test_speech_in_noise_is_found_at_the_right_times(phrases, snr_db, which):
    audio, truth = _in_noise([phrases[i] for i in which], snr_db, seed=int(snr_db))
    found = speech_segments(audio)
    assert len(found) == len(truth), f"found {found}, placed {truth}"
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert abs(start - true_start) <= BOUNDARY_TOLERANCE_S, (found, truth)
        assert abs(end - true_end) <= BOUNDARY_TOLERANCE_S, (found, truth)


def test_tone_burst_boundaries_with_a_known_floor():
    rng = np.random.default_rng(3)
    audio = apply_gain(rng.standard_normal(4 * SR).astype(np.float32), -60)
    audio[SR : 2 * SR] += tone(1000, 1.0, SR, amplitude=0.05)
    floor = noise_floor_dbfs(audio[: SR // 2])
    assert floor == pytest.approx(-60, abs=1.0)
    segments = speech_segments(audio, noise_floor_dbfs=floor)
    assert len(segments) == 1
    assert segments[0][0] == pytest.approx(1.0, abs=0.02)
    assert segments[0][1] == pytest.approx(2.0, abs=0.02)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("level_dbfs", [-80.0, -50.0, -20.0])
def test_noise_alone_is_not_speech(exponent, level_dbfs):
    rng = np.random.default_rng(int(exponent * 10 - level_dbfs))
    noise = apply_gain(colored_noise(20 * SR, exponent=exponent, rng=rng), level_dbfs)
    assert speech_segments(noise) == []
    assert speech_segments(noise, noise_floor_dbfs=noise_floor_dbfs(noise)) == []


def test_digital_silence_is_not_speech():
    silence = np.zeros(3 * SR, np.float32)
    assert frame_levels_dbfs(silence).max() == SILENCE_DBFS
    assert not speech_flags(silence).any()
    assert not speech_flags(silence, noise_floor_dbfs=SILENCE_DBFS).any()
    assert trim_to_speech(silence).size == 0


def test_short_dips_do_not_split_a_word_and_clicks_are_not_speech():
    rng = np.random.default_rng(5)
    audio = apply_gain(rng.standard_normal(4 * SR).astype(np.float32), -60)
    burst = tone(300, 0.3, SR, amplitude=0.1)
    audio[SR : SR + burst.size] += burst
    gap_end = SR + burst.size + int(0.12 * SR)  # a 120 ms closure, as in "com-puter"
    audio[gap_end : gap_end + burst.size] += burst
    audio[3 * SR : 3 * SR + 48] += 0.5  # a 3 ms click
    segments = speech_segments(audio)
    assert len(segments) == 1
    assert segments[0][0] == pytest.approx(1.0, abs=0.02)
    assert segments[0][1] == pytest.approx((gap_end + burst.size) / SR, abs=0.02)


def test_levels_are_in_dbfs():
    full_scale_sine = tone(1000, 1.0, SR, amplitude=1.0)
    assert frame_levels_dbfs(full_scale_sine) == pytest.approx(-3.01, abs=0.05)
    assert band_levels_dbfs(full_scale_sine)[5:] == pytest.approx(-3.01, abs=0.1)
    assert band_levels_dbfs(tone(20, 1.0, SR, amplitude=1.0))[5:].max() < -30  # rumble is cut


@pytest.mark.parametrize("chunk", [1, 160, 1280, 4000])
@pytest.mark.parametrize("floor", [None, -55.0])
def test_chunk_size_invariance(phrases, chunk, floor):
    audio, _ = _in_noise(phrases[:2], 20.0, seed=7)
    offline = speech_flags(audio, noise_floor_dbfs=floor)
    assert offline.shape == (audio.size // FRAME_SAMPLES,)
    assert offline.any()
    vad = VoiceActivity(floor)
    streamed = [vad.push(audio[i : i + chunk]) for i in range(0, audio.size, chunk)]
    streamed.append(vad.flush())
    assert all(flags.dtype == bool for flags in streamed)
    np.testing.assert_array_equal(np.concatenate(streamed), offline)
    assert vad.frames_decided == offline.size


def test_decisions_come_with_a_bounded_delay(phrases):
    audio, _ = _in_noise(phrases[:2], 20.0, seed=9)
    vad = VoiceActivity()
    settings = vad.settings
    max_delay = max(settings.bridge_frames, settings.min_speech_frames)
    for i in range(0, audio.size, FRAME_SAMPLES):
        vad.push(audio[i : i + FRAME_SAMPLES])
        assert vad.frames_seen - vad.frames_decided <= max_delay


def test_trim_to_speech_keeps_the_phrase_with_its_margin():
    speech = load_audio(DEMO_AUDIO)[: 2 * SR]
    rng = np.random.default_rng(11)
    audio = apply_gain(rng.standard_normal(5 * SR).astype(np.float32), -65)
    audio[SR : 3 * SR] += speech
    segments = speech_segments(audio)
    trimmed = trim_to_speech(audio, margin_s=0.2)
    expected = round((segments[-1][1] - segments[0][0] + 0.4) * SR)
    assert trimmed.size == pytest.approx(expected, abs=1)
    assert segments[0][0] >= 1.0 - BOUNDARY_TOLERANCE_S
    assert segments[-1][1] <= 3.0 + BOUNDARY_TOLERANCE_S
    assert np.shares_memory(trimmed, audio)


def test_noise_floor_needs_a_block():
    with pytest.raises(ValueError, match="need at least 1600"):
        noise_floor_dbfs(np.zeros(100, np.float32))
