"""Speech networks, weights, training and evaluation.

Sub-packages, bottom up (each may import those listed before it, never those after):

- `models.paths`: the model files shipped in ``models/data``.
- `models.speech`: local speech synthesis, phonetics, augmentation, data sets and corpora.
- `models.nn`: trainable numpy layers, losses, optimizers, the training loop, model files, and
  training on the wgpu engine.
- `models.base`: the base recognizer (embedding network and its heads), its training and evidence.
- `models.wake`: wake-word detectors: context geometry, training from text, calibration,
  streaming detection, the speaker check, metrics and evaluation.
- `models.enroll`: fitting a wake word to its user's voice, and what that buys on real voices.

May import dsp and kernels; never the agent.
"""
