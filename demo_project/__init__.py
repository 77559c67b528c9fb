"""The demo site for realtime: a live order-status page."""
