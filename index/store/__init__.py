"""The gallery store: manifest, writer lock, item rows and their checks, generation files."""
