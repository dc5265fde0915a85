"""Wake-word time geometry: windows per hop, a hop's context, training examples, stream times."""

import numpy as np
import pytest

from dsp.constants import HOP_SAMPLES, N_FFT, N_MELS, SAMPLE_RATE_HZ
from dsp.features import frame_count
from models.wake.context import (
    CONTEXT_FRAMES,
    CONTEXT_HOPS,
    CONTEXT_S,
    CONTEXT_SAMPLES,
    CONTEXT_STRIDE_HOPS,
    CONTEXT_WINDOWS,
    HOP_FRAMES,
    HOP_S,
    WINDOW_FRAMES,
    context_vectors,
    example_windows,
    frame_end_s,
    hop_end_s,
    hop_windows,
)


def test_geometry_is_100_ms_hops_and_three_windows_half_a_second_apart():
    assert HOP_S == pytest.approx(0.1)
    assert WINDOW_FRAMES == frame_count(SAMPLE_RATE_HZ)
    assert CONTEXT_WINDOWS == 3
    assert CONTEXT_STRIDE_HOPS * HOP_S == pytest.approx(0.5)
    assert CONTEXT_HOPS == 10
    assert CONTEXT_FRAMES == WINDOW_FRAMES + CONTEXT_HOPS * HOP_FRAMES
    assert frame_count(CONTEXT_SAMPLES) == CONTEXT_FRAMES
    assert frame_count(CONTEXT_SAMPLES - 1) == CONTEXT_FRAMES - 1
    assert CONTEXT_S == pytest.approx(CONTEXT_SAMPLES / SAMPLE_RATE_HZ)


@pytest.mark.parametrize("frames", [WINDOW_FRAMES, WINDOW_FRAMES + 9, WINDOW_FRAMES + 10, 345])
def test_hop_windows_are_slices_every_hop(frames):
    features = np.random.default_rng(frames).standard_normal((frames, N_MELS)).astype(np.float32)
    windows = hop_windows(features)
    expected_hops = (frames - WINDOW_FRAMES) // HOP_FRAMES + 1
    assert windows.shape == (expected_hops, WINDOW_FRAMES, N_MELS)
    for k in range(expected_hops):
        start = k * HOP_FRAMES
        np.testing.assert_array_equal(windows[k], features[start : start + WINDOW_FRAMES])
    assert not windows.flags.writeable


def test_hop_windows_of_less_than_a_window_is_empty():
    windows = hop_windows(np.ones((WINDOW_FRAMES - 1, N_MELS), np.float16))
    assert windows.shape == (0, WINDOW_FRAMES, N_MELS) and windows.dtype == np.float16


def test_context_vectors_join_hops_i_i5_i10():
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((23, 6)).astype(np.float32)
    contexts = context_vectors(embeddings)
    assert contexts.shape == (23 - CONTEXT_HOPS, CONTEXT_WINDOWS * 6)
    for i in range(contexts.shape[0]):
        by_hand = np.concatenate([embeddings[i], embeddings[i + 5], embeddings[i + 10]])
        np.testing.assert_array_equal(contexts[i], by_hand)
    assert context_vectors(embeddings[:CONTEXT_HOPS]).shape == (0, CONTEXT_WINDOWS * 6)
    assert context_vectors(embeddings[: CONTEXT_HOPS + 1]).shape == (1, CONTEXT_WINDOWS * 6)


def test_example_windows_are_the_hop_windows_of_each_example_at_hops_0_5_10():
    rng = np.random.default_rng(1)
    batch = rng.standard_normal((4, CONTEXT_FRAMES, N_MELS)).astype(np.float32)
    windows = example_windows(batch)
    assert windows.shape == (4 * CONTEXT_WINDOWS, WINDOW_FRAMES, N_MELS)
    for n, example in enumerate(batch):
        per_hop = hop_windows(example)
        assert per_hop.shape[0] == CONTEXT_HOPS + 1  # an example is exactly one context long
        for k, hop in enumerate((0, 5, 10)):
            np.testing.assert_array_equal(windows[n * CONTEXT_WINDOWS + k], per_hop[hop])


def test_example_windows_give_the_stream_context_of_its_last_hop():
    # Embedding each window by a fixed projection stands in for the base network.
    rng = np.random.default_rng(2)
    projection = rng.standard_normal((WINDOW_FRAMES * N_MELS, 5)).astype(np.float32)

    def embed(windows):
        return windows.reshape(windows.shape[0], -1) @ projection

    stream = rng.standard_normal((CONTEXT_FRAMES + 30, N_MELS)).astype(np.float32)
    contexts = context_vectors(embed(hop_windows(stream)))
    for i in range(contexts.shape[0]):
        example = stream[i * HOP_FRAMES : i * HOP_FRAMES + CONTEXT_FRAMES][None]
        np.testing.assert_allclose(
            embed(example_windows(example)).reshape(1, -1)[0], contexts[i], rtol=1e-5, atol=1e-4
        )


def test_frame_and_hop_end_times_agree_with_frame_count():
    for n_frames in (1, 2, 97, 150):
        samples = round(frame_end_s(n_frames) * SAMPLE_RATE_HZ)
        assert frame_count(samples) == n_frames
        assert frame_count(samples - 1) == n_frames - 1
    for k in range(0, 40, 3):
        samples = hop_end_s(k) * SAMPLE_RATE_HZ
        assert samples == pytest.approx(round(samples))
        samples = round(samples)
        assert frame_count(samples) == k * HOP_FRAMES + WINDOW_FRAMES
        assert frame_count(samples - 1) == k * HOP_FRAMES + WINDOW_FRAMES - 1
        assert hop_end_s(k) == pytest.approx(frame_end_s(k * HOP_FRAMES + WINDOW_FRAMES))
    hops = np.arange(5)
    np.testing.assert_allclose(np.diff(hop_end_s(hops)), HOP_S)
    assert hop_end_s(0) == pytest.approx(((WINDOW_FRAMES - 1) * HOP_SAMPLES + N_FFT) / 16000)
