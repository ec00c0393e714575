"""`python -m siamese.cli`: the command line, as the `siamese` script runs it."""

from siamese.cli.main import app

if __name__ == "__main__":
    app(prog_name="siamese")
