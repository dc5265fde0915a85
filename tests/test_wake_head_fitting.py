"""Fitting a wake head: standardized inputs folded away, temperature, what counts as the phrase."""

import numpy as np
import pytest

from models.wake.head_training import TEMPERATURES, Standardization, fit_temperature
from models.wake.model import WakeHead
from models.wake.recipe import SMALL_RECIPE, WakeRecipe
from models.wake.streams import contains_phrase


def random_head(rng, inputs=12, hidden=5):
    return WakeHead(
        rng.standard_normal((inputs, hidden)).astype(np.float32),
        rng.standard_normal(hidden).astype(np.float32),
        rng.standard_normal((hidden, 2)).astype(np.float32),
        rng.standard_normal(2).astype(np.float32),
    )


def test_a_folded_head_on_raw_inputs_scores_as_the_head_on_standardized_ones():
    rng = np.random.default_rng(0)
    raw = (rng.standard_normal((200, 12)) * 30 + 40).astype(np.float32)  # like the embedding
    standard = Standardization.of(raw)
    head = random_head(rng)
    np.testing.assert_allclose(
        standard.fold(head).scores(raw), head.scores(standard.apply(raw)), atol=1e-5
    )
    back = standard.unfold(standard.fold(head))
    np.testing.assert_allclose(back.w1, head.w1, atol=1e-5)
    np.testing.assert_allclose(back.b1, head.b1, atol=1e-4)


def test_standardized_inputs_have_zero_mean_and_unit_scale():
    rng = np.random.default_rng(1)
    raw = (rng.standard_normal((500, 4)) * [1, 10, 100, 0.1] + [5, -3, 90, 0]).astype(np.float32)
    z = Standardization.of(raw).apply(raw)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=0.02)


@pytest.mark.parametrize("inflation", [1.0, 8.0])
def test_temperature_undoes_an_overconfident_margin(inflation):
    # Labels drawn from the head's own probabilities are calibrated by construction: a head
    # whose margins are inflated k times needs temperature k to match them again.
    rng = np.random.default_rng(2)
    head = random_head(rng)
    x = rng.standard_normal((20000, 12)).astype(np.float32)
    y = (rng.random(x.shape[0]) < head.scores(x)).astype(np.int16)
    inflated = WakeHead(head.w1, head.b1, head.w2 * inflation, head.b2 * inflation)
    temperature = fit_temperature(inflated, x, y)
    assert temperature == pytest.approx(inflation, rel=0.12)
    assert TEMPERATURES[0] < temperature < TEMPERATURES[-1]


@pytest.mark.parametrize(
    ("text", "phrase", "says"),
    [
        ("I want to go home", "two", True),  # "to" sounds like "two": neither negative nor positive
        ("one two three", "two", True),
        ("the cat ate it", "eight", True),
        ("who won the game", "one", True),
        ("hey smart mirror", "hey smart mirror", True),
        ("hey smart river", "hey smart mirror", False),
        ("tomato soup", "two", False),
        ("seventy", "seven", False),
        ("", "two", False),
    ],
)
def test_a_segment_says_the_phrase_in_its_words_or_their_homophones(text, phrase, says):
    assert contains_phrase(text, phrase) is says


def test_the_recipe_widens_voices_and_noise_of_the_phrase():
    recipe = WakeRecipe()
    assert recipe.voice_config().formant_prob == recipe.formant_prob > 0
    assert recipe.voice_config().noise_prob == 0  # noise comes after mixing
    assert recipe.noise_config().snr_range_db == recipe.snr_db == (0.0, 30.0)
    assert SMALL_RECIPE.as_dict()["formant_prob"] == recipe.formant_prob
