"""HTTP: the control-plane REST API under /v1, OpenAPI at /openapi.json, docs at /docs."""
