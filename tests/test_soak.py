"""A short soak (`agent.bench.soak`): memory, descriptors and threads hold; the audio is sound."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from agent.bench.soak import soak_daemon, soak_detector
from agent.bench.soak_audio import negative_blocks, take, utterance_pool
from agent.bench.soak_report import RSS_LIMIT_MB, poisson_quantile, rows
from dsp.constants import SAMPLE_RATE_HZ
from tests.conftest import require

SHORT_WARMUP_S = 120.0


@pytest.fixture(scope="module")
def pool() -> list[np.ndarray]:
    """The utterance pool (needs the local synthesizers or their cached renditions)."""
    require(
        shutil.which("espeak-ng") is not None and shutil.which("flite") is not None,
        "espeak-ng and flite are needed to render the soak's speech",
    )
    return utterance_pool()


def test_generator_is_deterministic_and_exact_in_length(pool: list[np.ndarray]) -> None:
    first = np.concatenate(list(take(negative_blocks(pool, seed=3), 30.0)))
    again = np.concatenate(list(take(negative_blocks(pool, seed=3), 30.0)))
    other = np.concatenate(list(take(negative_blocks(pool, seed=4), 30.0)))
    assert first.size == again.size == 30 * SAMPLE_RATE_HZ
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.abs(first).max() <= 1.0
    assert np.abs(first).max() > 0.05  # speech, not only the noise floor


def test_generator_yields_80_ms_blocks_and_never_repeats_a_block(pool: list[np.ndarray]) -> None:
    blocks = list(take(negative_blocks(pool, seed=0), 120.0))
    assert {b.size for b in blocks} == {SAMPLE_RATE_HZ * 80 // 1000}
    assert len({b.tobytes() for b in blocks}) == len(blocks)


def test_poisson_quantile() -> None:
    assert poisson_quantile(0.0, 0.99) == 0
    assert poisson_quantile(2.4, 0.99) == 7
    assert poisson_quantile(0.1, 0.99) == 1


def test_detector_soak_holds_memory_fds_and_threads(pool: list[np.ndarray]) -> None:
    result = soak_detector(0.3, warmup_s=SHORT_WARMUP_S, every_s=240.0)
    assert result.audio_s >= 0.3 * 3600
    assert len(result.samples) >= 3
    first, last = result.samples[0], result.samples[-1]
    assert result.rss_growth_mb() < RSS_LIMIT_MB
    assert last.fds <= first.fds
    assert last.threads == first.threads
    assert result.python_threads is not None
    assert result.python_threads[1] == result.python_threads[0]
    assert all(row.ok is not False for row in rows(result, 0.3)), rows(result, 0.3)


def test_daemon_soak_exits_cleanly_and_holds_memory_fds_and_threads(
    pool: list[np.ndarray],
) -> None:
    result = soak_daemon(0.1, warmup_s=SHORT_WARMUP_S, every_s=60.0)
    assert result.exit_code == 0
    assert result.audio_s >= 0.1 * 3600
    assert len(result.samples) >= 3
    first, last = result.samples[0], result.samples[-1]
    assert result.rss_growth_mb() < RSS_LIMIT_MB
    assert last.fds <= first.fds
    assert last.threads == first.threads
    assert result.false_alarms == 0  # six minutes of talk without the wake word
    assert result.uploads == 0
