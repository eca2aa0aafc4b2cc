"""``python -m hashmatch.cli``: the same as the ``hashmatch`` console script."""

from hashmatch.cli.app import main

if __name__ == "__main__":
    main()
