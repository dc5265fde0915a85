"""Speech material for training: synthesis, phonetics, augmentation, data sets, corpora.

Imports dsp and kernels' errors only (and `models.paths`): everything above builds on it.
"""
