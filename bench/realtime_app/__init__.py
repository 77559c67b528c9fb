"""Target (a): this project's `realtime` app, configured for the benchmark."""
