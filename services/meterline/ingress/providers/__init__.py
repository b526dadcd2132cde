"""One adapter per provider wire format."""
