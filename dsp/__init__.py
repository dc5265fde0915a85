"""Audio front end: file loading, resampling and log-mel features (offline and streaming)."""
