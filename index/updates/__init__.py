"""Changing a gallery: the single writer, build/add/remove, sync plans, uploads, reports."""
