"""Orders: the demo app whose status page updates live."""
