"""Bad inputs and faults of the harness's own: each gives one clear error and leaves nothing behind (issue 9)."""
