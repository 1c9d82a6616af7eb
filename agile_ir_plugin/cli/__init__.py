"""Command-line programs of the plugin.

Each module has a ``main(argv=None)`` that returns an exit code; ``tools/<name>.py`` in a checkout
runs it, and so does the ``agile-ir`` command of an installed wheel."""
