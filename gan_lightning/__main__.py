import sys

from gan_lightning.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
