"""The user's enrollments: recording takes of a wake phrase, and the owner-only store.

`capture` (takes from the microphone or files, checked as they come) and `store` (the takes,
the room and the fine-tuned detector on disk). Fine-tuning itself lives in `models.enroll`. May
import `agent.capture`, `agent.settings` and `agent.paths`.
"""
