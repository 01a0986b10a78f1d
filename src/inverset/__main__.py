"""``python -m inverset`` is the ``inverset`` command."""

from inverset.cli import main

main()
