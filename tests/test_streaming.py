"""Streaming a network hop by hop equals running it on every whole window, for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.errors import ModelError
from kernels.network import (
    Activation,
    Conv2d,
    Dense,
    MaxPool2d,
    Network,
    Softmax,
    run_numpy,
)
from kernels.streaming import StreamingNetwork
from models.paths import SHIPPED_EMBEDDING

STREAM_TOL = 1e-5
"""Streamed against whole-window outputs, relative to the output's largest magnitude."""


def small_network(rng: np.random.Generator) -> Network:
    """Time layers of several strides and spans (one leaves a trailing column), then a head."""
    leaky = Activation(slope=0.2, low=-0.1)
    return Network(
        (23, 6, 1),
        (
            Conv2d(rng.normal(0, 0.5, (3, 3, 1, 4)), rng.normal(0, 0.1, 4),
                   padding=(0, 1, 0, 1), activation=leaky),
            Conv2d(rng.normal(0, 0.5, (2, 1, 4, 4)), rng.normal(0, 0.1, 4), dilation=(2, 1),
                   activation=leaky),
            MaxPool2d((2, 2)),
            Conv2d(rng.normal(0, 0.5, (3, 1, 4, 5)), rng.normal(0, 0.1, 5), stride=(2, 1)),
            Dense(rng.normal(0, 0.5, (4 * 3 * 5, 3)), np.zeros(3)),
            Softmax(),
        ),
    )  # fmt: skip


def whole_windows(network: Network, frames: np.ndarray, hop: int) -> np.ndarray:
    window = network.input_shape[0]
    starts = range(0, frames.shape[0] - window + 1, hop)
    windows = np.stack([frames[s : s + window] for s in starts])
    return run_numpy(network, windows).reshape(len(starts), -1)


def streamed(network: Network, frames: np.ndarray, hop: int, cuts: list[int]) -> np.ndarray:
    stream = StreamingNetwork(network, hop)
    outputs = []
    for piece in np.split(frames, sorted(set(cuts))):
        outputs += stream.push(piece)
    return np.stack([o.reshape(-1) for o in outputs])


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=STREAM_TOL * scale)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 120), max_size=12))
def test_streamed_outputs_equal_whole_windows_for_any_chunks(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    network = small_network(rng)
    frames = rng.normal(0, 1, (120, 6, 1)).astype(np.float32)
    expected = whole_windows(network, frames, hop=4)
    assert_same(streamed(network, frames, 4, cuts), expected)


def test_a_stream_starts_again_after_reset() -> None:
    rng = np.random.default_rng(1)
    network = small_network(rng)
    frames = rng.normal(0, 1, (60, 6, 1)).astype(np.float32)
    stream = StreamingNetwork(network, 4)
    first = stream.push(frames)
    stream.reset()
    assert stream.windows == 0 and stream.push(frames[:22]) == []
    again = stream.push(frames[22:])
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_a_hop_that_does_not_fit_the_strides_or_time_padding_is_refused() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ModelError, match="hop 3 is not a multiple of the time stride 2"):
        StreamingNetwork(small_network(rng), 3)
    padded = Network((9, 4, 1), (Conv2d(rng.normal(size=(3, 3, 1, 2)), np.zeros(2),
                                        padding=(1, 1)),))  # fmt: skip
    with pytest.raises(ModelError, match="along time"):
        StreamingNetwork(padded, 1)


def test_the_speech_embedding_streams_exactly() -> None:
    from models.base.speech_embedding import SpeechEmbedding

    if not SHIPPED_EMBEDDING.is_file():
        pytest.fail(f"{SHIPPED_EMBEDDING} is missing: the package ships it")
    base = SpeechEmbedding.load()
    rng = np.random.default_rng(3)
    t = np.arange(16_000 * 3) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) * (np.sin(2 * np.pi * 1.5 * t) > 0)
             + rng.normal(0, 0.01, t.size)).astype(np.float32)  # fmt: skip
    expected = base.embed_audio(audio)
    assert expected.shape == ((300 - 2 - 76) // 8 + 1, 96)
    for sizes in ([160], [1280], [1, 7, 333, 4000], list(rng.integers(1, 3000, 40))):
        stream, outputs, start = base.stream(), [], 0
        while start < audio.size:
            for size in sizes:
                outputs += stream.push(audio[start : start + size])
                start += size
        assert_same(np.stack(outputs), expected)
