"""The inference worker behind /score: `protocol` (frames, key), `client` (web process), `server` (worker)."""
