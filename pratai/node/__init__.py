"""The node agent: warm instance pools and the loop that pulls queued work."""
