"""Baseline (b): plain Channels with one channel-layer group membership per socket."""
