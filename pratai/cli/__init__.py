"""The `pratai` command: a client of the HTTP API, plus `serve` and `doctor` for this machine."""
