"""The domain: models and services. Knows the store, broker, artifact and driver interfaces only."""
