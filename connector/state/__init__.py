"""What one pipeline remembers between runs: checkpoint, fingerprints of what it emitted, lock."""
