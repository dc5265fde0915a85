"""The earshot agent: command line, settings, audio capture and the daemon."""
