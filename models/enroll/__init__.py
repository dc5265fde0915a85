"""Enrollment: fitting a wake word to its user's voice, and its evidence on real voices.

`takes` (is a recording usable?), `finetune` (a detector adapted to a few takes), `evaluation`
and `speaker_eval` (the FSDD per-speaker protocols). May import `models.wake` and everything
below it.
"""
