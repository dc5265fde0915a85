"""Wake-word detectors on the base embedding: training from text, calibration, detection.

`context` (the time geometry every detector shares), `data` (phrase examples and negative
streams), `training` (heads trained from the typed phrase, thresholds calibrated), `model` (a
trained detector on disk), `detector` (streaming detection of every wake word at once), `speaker`
(the optional speaker check), `metrics` and `evaluation`. May import `models.base`, `models.nn`,
`models.speech`, dsp and kernels.
"""
