"""`python -m siamese`: the command line, so torchrun can start it.

For example: `torchrun ... -m siamese train ...`.
"""

from siamese.cli import app

if __name__ == "__main__":
    app(prog_name="siamese")
