from dsp import constants as c


def test_derived_sizes_match_their_units():
    assert c.WINDOW_SAMPLES == 400 == c.SAMPLE_RATE_HZ * c.WINDOW_MS / 1000
    assert c.HOP_SAMPLES == 160 == c.SAMPLE_RATE_HZ * c.HOP_MS / 1000
    assert c.FRAMES_PER_SECOND == 100
    assert c.N_FREQ_BINS == 257
    assert c.N_FFT >= c.WINDOW_SAMPLES
    assert c.F_MAX_HZ == c.SAMPLE_RATE_HZ / 2


def test_front_end_settings_report_differences():
    live = c.LIVE_FRONT_END
    assert live.differences(c.FrontEndSettings()) == []
    other = c.FrontEndSettings(n_mels=32, hop_samples=320)
    assert live.differences(other) == ["hop_samples: 160 != 320", "n_mels: 40 != 32"]
    assert live.as_dict()["sample_rate_hz"] == 16_000
