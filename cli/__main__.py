"""``python -m hashmatch.cli``: the same as the ``hashmatch`` console script."""

from hashmatch.cli.app import main

main()
