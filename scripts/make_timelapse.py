"""Make the training timelapse GIF on demand, e.g. for a run that is still going or was stopped early.

    python scripts/make_timelapse.py --samples_dir runs/default/version_0/samples
    python scripts/make_timelapse.py --samples_dir runs/default/version_0/samples --output t.gif --frame_ms 100
"""

import sys

from jsonargparse import CLI

from gan_lightning.callbacks.timelapse import make_timelapse


def main(args=None) -> None:
    try:
        out = CLI(make_timelapse, args=args, as_positional=False)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
