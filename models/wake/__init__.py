"""Wake-word detectors on the base embedding: training from text, calibration, detection.

`context` (the time geometry every detector shares); training material: `examples` (speech
placed where the detector looks, embedded), `streams` (negative streams of running speech),
`phrase_examples` (a phrase's renditions, confusables and partials), `negatives` (the
phrase-independent negatives: stream hops and the word bank); training: `recipe` (how much of
everything), `head_training` (fitting the head), `calibration` (scores on a stream without the
wake word), `training` (all of it for one typed phrase); `model` (a trained detector on disk),
`detector` (streaming detection of every wake word at once), `speaker` (the optional speaker
check), `metrics` and `evaluation`. May import `models.base`, `models.nn`, `models.speech`, dsp
and kernels.
"""
