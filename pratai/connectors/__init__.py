"""Connectors turn messages from systems users already run into Pratai events on a topic."""
