"""What a device learns from its user: feedback it keeps (opt-in, owner-only, never forwarded)."""
