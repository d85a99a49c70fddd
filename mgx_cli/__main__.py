"""``python -m mgx_cli ...``: the same as the ``mgx`` console script."""

from mgx_cli.commands import main

if __name__ == "__main__":
    main()
