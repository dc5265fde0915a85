"""Each augmentation does what it claims, measured on the output."""

import numpy as np
import pytest

from models.speech import augment as aug
from tests.conftest import tone

SR = 16_000


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def dominant_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(spectrum)])


def band_power(x, low, high):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_change_speed_scales_duration_and_frequency(factor):
    out = aug.change_speed(tone(500, 1.0, SR), factor)
    assert out.size == pytest.approx(SR / factor, abs=2)
    assert dominant_hz(out) == pytest.approx(500 * factor, rel=0.01)


def test_shift_pitch_keeps_duration_and_moves_frequency():
    out = aug.shift_pitch(tone(440, 1.0, SR), 12)
    assert out.size == SR
    assert dominant_hz(out[2000:-2000]) == pytest.approx(880, rel=0.02)


def test_gain_in_decibels():
    x = tone(300, 0.5, SR)
    assert rms(aug.apply_gain(x, -20)) == pytest.approx(rms(x) / 10, rel=1e-5)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_has_the_requested_spectral_slope(exponent):
    noise = aug.colored_noise(SR * 4, exponent=exponent, rng=np.random.default_rng(0))
    assert rms(noise) == pytest.approx(1.0, rel=1e-4)
    # Power per octave band ~ f^(1 - exponent): fit the slope across 100 Hz - 6.4 kHz.
    edges = 100 * 2.0 ** np.arange(7)
    powers = [
        band_power(noise, lo, hi) / (hi - lo) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    slope = np.polyfit(np.log10(edges[:-1] * np.sqrt(2)), np.log10(powers), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


@pytest.mark.parametrize("snr_db", [5.0, 10.0, 20.0])
def test_mix_at_snr_hits_the_target(snr_db):
    speech = tone(200, 1.0, SR)
    noise = aug.colored_noise(SR // 3, exponent=1.0, rng=np.random.default_rng(1))
    mixed = aug.mix_at_snr(speech, noise, snr_db)
    added = mixed - speech
    assert 20 * np.log10(rms(speech) / rms(added)) == pytest.approx(snr_db, abs=0.01)


def test_babble_is_unit_level_speech_mixture():
    rng = np.random.default_rng(2)
    talkers = [tone(f, 0.3, SR) for f in (150, 220, 330)]
    out = aug.babble(SR, talkers, rng=rng)
    assert out.size == SR
    assert rms(out) == pytest.approx(1.0, rel=1e-4)
    for f in (150, 220, 330):
        assert band_power(out, f - 5, f + 5) > 0.1 * band_power(out, 0, SR / 2)


@pytest.mark.parametrize("rt60", [0.2, 0.6])
def test_synthetic_rir_decays_60_db_in_rt60(rt60):
    rir = aug.synthetic_rir(rt60_s=rt60, rng=np.random.default_rng(3), direct_ratio_db=-10)
    tail = rir[1:].astype(np.float64)
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))  # Schroeder
    t5, t25 = np.argmax(edc < -5) / SR, np.argmax(edc < -25) / SR
    measured = 3 * (t25 - t5)  # T20 extrapolated to 60 dB
    assert measured == pytest.approx(rt60, rel=0.15)


def test_reverberate_keeps_length_and_level_and_smears_in_time():
    click = np.zeros(SR, np.float32)
    click[100] = 1.0
    wet = aug.reverberate(click, aug.synthetic_rir(rt60_s=0.5, rng=np.random.default_rng(4)))
    assert wet.size == SR
    assert rms(wet) == pytest.approx(rms(click), rel=1e-4)
    assert np.sum(np.abs(wet[2000:]) > 1e-4) > 1000


def test_band_limit_removes_out_of_band_energy():
    x = aug.colored_noise(SR * 2, exponent=0.0, rng=np.random.default_rng(5))
    out = aug.band_limit(x, low_hz=300, high_hz=3400)
    assert band_power(out, 600, 3000) / band_power(x, 600, 3000) == pytest.approx(1, abs=0.1)
    assert band_power(out, 5500, 8000) < 1e-3 * band_power(x, 5500, 8000)
    assert band_power(out, 0, 120) < 1e-3 * band_power(x, 0, 120)


def test_microphone_coloration_is_bounded():
    x = aug.colored_noise(SR * 2, exponent=0.0, rng=np.random.default_rng(6))
    out = aug.color_microphone(x, rng=np.random.default_rng(7), max_db=6.0)
    ratio_db = 10 * np.log10(band_power(out, 1000, 1200) / band_power(x, 1000, 1200))
    assert abs(ratio_db) <= 6.5
    assert not np.allclose(out, x)


def test_augmenter_is_reproducible_and_varied():
    x = tone(250, 1.0, SR, amplitude=0.3)
    augmenter = aug.Augmenter(babble_sources=[tone(180, 0.5, SR), tone(260, 0.4, SR)])
    a = [augmenter(x, np.random.default_rng(seed)) for seed in range(6)]
    b = [augmenter(x, np.random.default_rng(seed)) for seed in range(6)]
    for one, two in zip(a, b, strict=True):
        np.testing.assert_array_equal(one, two)
    assert len({round(rms(y), 6) for y in a}) == 6
    assert all(np.abs(y).max() <= 1.0 for y in a)


def vowel(f0=125.0, formant=1000.0, seconds=1.0):
    """A pulse train at ``f0`` through one resonance at ``formant``, a little breath noise: a
    crude sustained vowel."""
    from scipy import signal

    pulses = np.zeros(int(seconds * SR))
    pulses[:: int(round(SR / f0))] = 1.0
    r, theta = 0.9, 2 * np.pi * formant / SR  # a 540 Hz wide formant
    voiced = signal.lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], pulses)
    breath = np.random.default_rng(0).standard_normal(voiced.size) * 0.02 * voiced.std()
    return (voiced + breath).astype(np.float32)


def strongest_harmonic_hz(x, f0=125.0):
    """The harmonic of ``f0`` with the most energy: where the envelope peaks."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    harmonics = f0 * np.arange(1, 30)
    power = [spectrum[np.argmin(np.abs(freqs - h))] for h in harmonics]
    return float(harmonics[int(np.argmax(power))])


def period_hz(x):
    """Fundamental from the autocorrelation's highest peak between 60 and 400 Hz."""
    ac = np.correlate(x, x, mode="full")[x.size - 1 :]
    lags = np.arange(SR // 400, SR // 60)
    return SR / float(lags[np.argmax(ac[lags])])


@pytest.mark.parametrize("factor", [0.85, 1.2])
def test_shift_formants_moves_the_envelope_and_keeps_pitch_and_length(factor):
    x = vowel()
    out = aug.shift_formants(x, factor)
    assert out.size == x.size
    middle = slice(2000, -2000)
    before, after = strongest_harmonic_hz(x[middle]), strongest_harmonic_hz(out[middle])
    assert after == pytest.approx(before * factor, abs=125)  # within one harmonic
    assert after != before
    assert period_hz(out[middle]) == pytest.approx(period_hz(x[middle]), rel=0.03)


def test_formant_shift_is_off_by_default_so_old_data_sets_stay_the_same():
    x = vowel()
    config = aug.AugmentConfig()
    assert config.formant_prob == 0.0
    a = aug.Augmenter(config)(x, np.random.default_rng(3))
    b = aug.Augmenter(config)(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
