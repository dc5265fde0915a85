"""Log-mel parity with librosa, and streaming == offline for any chunk size."""

import librosa
import numpy as np
import pytest

from agent.paths import DEMO_AUDIO
from dsp import constants as c
from dsp.audio import load_audio
from dsp.features import LogMelStream, frame_count, log_mel, mel_filterbank
from tests.conftest import fsdd_files, tone

PARITY_ATOL = 1e-4
CHUNK_SIZES = [1, 160, 1000, 1280, 4000]


def librosa_log_mel(samples: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=samples.astype(np.float64), sr=c.SAMPLE_RATE_HZ, n_fft=c.N_FFT, hop_length=c.HOP_SAMPLES,
        win_length=c.WINDOW_SAMPLES, window="hann", center=False, power=2.0, n_mels=c.N_MELS,
        fmin=c.F_MIN_HZ, fmax=c.F_MAX_HZ,
    )  # fmt: skip
    return np.log(mel + c.LOG_FLOOR).T


def synthetic_signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    sr = c.SAMPLE_RATE_HZ
    t = np.arange(sr * 2) / sr
    return {
        "white_noise": 0.1 * rng.standard_normal(sr + 123),
        "chirp": 0.5 * np.sin(2 * np.pi * (50 * t + 1900 * t**2)),
        "tone_1khz": tone(1000, 1.3, sr),
        "silence": np.zeros(sr // 2),
        "clipped_square": np.sign(np.sin(2 * np.pi * 440 * t[: sr // 3])),
        "quiet": 1e-4 * rng.standard_normal(7777),
    }


def test_mel_filterbank_matches_librosa():
    ours = mel_filterbank()
    ref = librosa.filters.mel(sr=c.SAMPLE_RATE_HZ, n_fft=c.N_FFT, n_mels=c.N_MELS, dtype=np.float64)
    assert ours.shape == (c.N_MELS, c.N_FREQ_BINS)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(synthetic_signals()))
def test_log_mel_matches_librosa_on_synthetic_audio(name):
    samples = synthetic_signals()[name]
    ours, ref = log_mel(samples), librosa_log_mel(samples)
    assert ours.shape == ref.shape == (frame_count(samples.size), c.N_MELS)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=PARITY_ATOL, rtol=0)


def test_log_mel_matches_librosa_on_bundled_speech():
    samples = load_audio(DEMO_AUDIO)
    np.testing.assert_allclose(log_mel(samples), librosa_log_mel(samples), atol=PARITY_ATOL, rtol=0)


def test_log_mel_matches_librosa_on_real_voices():
    files = fsdd_files()[::150]  # 20 recordings spread over speakers and digits
    worst = 0.0
    for path in files:
        samples = load_audio(path)
        ours, ref = log_mel(samples), librosa_log_mel(samples)
        assert ours.shape == ref.shape
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst < PARITY_ATOL, f"max |ours - librosa| = {worst:.2e} over {len(files)} FSDD files"


@pytest.mark.parametrize("n", [0, 1, c.N_FFT - 1])
def test_log_mel_of_audio_shorter_than_a_frame_is_empty(n):
    out = log_mel(np.zeros(n))
    assert out.shape == (0, c.N_MELS)
    assert out.dtype == np.float32


@pytest.mark.parametrize("n", [512, 671, 672, 16000])
def test_frame_count_follows_librosa_framing(n):
    assert frame_count(n) == librosa_log_mel(np.full(n, 0.1)).shape[0]
    assert frame_count(c.N_FFT - 1) == 0


def test_log_mel_rejects_multichannel_input():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000)))


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_streaming_equals_offline_for_any_chunk_size(chunk):
    samples = np.concatenate(list(synthetic_signals().values())[:3]).astype(np.float32)
    stream = LogMelStream()
    pieces = [stream.push(samples[i : i + chunk]) for i in range(0, samples.size, chunk)]
    assert all(p.shape[1] == c.N_MELS and p.dtype == np.float32 for p in pieces)
    streamed = np.concatenate(pieces)
    np.testing.assert_array_equal(streamed, log_mel(samples))
    assert stream.frames_emitted == frame_count(samples.size)


def test_streaming_with_random_chunk_sizes_and_reset():
    rng = np.random.default_rng(3)
    samples = rng.standard_normal(12_345).astype(np.float32) * 0.2
    cuts = np.sort(rng.integers(0, samples.size, 40))
    stream = LogMelStream()
    streamed = np.concatenate([stream.push(part) for part in np.split(samples, cuts)])
    np.testing.assert_array_equal(streamed, log_mel(samples))
    stream.reset()
    assert stream.frames_emitted == 0
    np.testing.assert_array_equal(stream.push(samples[:2000]), log_mel(samples[:2000]))
