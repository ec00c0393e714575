"""Galleries larger than RAM: an IVF index built in parts, merged into on-disk lists."""
