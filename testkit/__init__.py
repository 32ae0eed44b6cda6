"""The shared test kit: what tests/ and bench/ both use (stores, servers, logs of events)."""
