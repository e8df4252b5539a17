"""Trust: key material, the trust store, XML signatures (sender and broker)."""
