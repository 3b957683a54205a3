"""The command line: ``fit`` and the other Lightning subcommands, ``sample``, ``evaluate``, ``sweep`` and ``sweep-report``."""
