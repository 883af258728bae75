"""The `awesearch` command, kept at the top of the checkout (the design card's `cli.py`): a shim of
`awesearch.cli`, which is what the installed `awesearch` script runs. Nothing lives here."""

from awesearch.cli import app, main  # noqa: F401

if __name__ == "__main__":
    main()
