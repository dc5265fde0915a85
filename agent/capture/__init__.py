"""Audio in: microphone, file and stdin sources, input levels, and the daemon's capture stage.

May import `agent.settings`, `agent.paths`, dsp and kernels' errors; nothing else of the agent.
"""
