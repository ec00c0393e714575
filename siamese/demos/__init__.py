"""`siamese demo` and `siamese demo --pair`, and the synthetic identities they (and the
tests) generate."""
