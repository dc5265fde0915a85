"""The base recognizer: a DS-CNN embedding with its heads, trained, evaluated and transferred.

May import `models.nn`, `models.speech`, dsp and kernels.
"""
