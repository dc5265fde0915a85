"""Trainable networks in numpy and on wgpu: layers, losses, optimizers, training, model files.

Each layer keeps its forward pass and its local gradient side by side (`layer_base`); the layouts
are those of `kernels`, so export to the inference engine is a copy. May import `models.speech`
(the trainer reads corpora), dsp and kernels.
"""
