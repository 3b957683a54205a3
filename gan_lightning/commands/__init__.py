"""The command line: ``fit`` and the other Lightning subcommands, ``sample`` and ``evaluate``."""
