"""Write a small synthetic chest-X-ray-like data set with a medclf manifest.

python scripts/make_synthetic_data.py --out data/demo --n 1000 --size 128
"""

from __future__ import annotations

import argparse

from medclf.data.synthetic import make_synthetic_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    manifest = make_synthetic_dataset(args.out, n_images=args.n, image_size=args.size, seed=args.seed)
    print(f"wrote {args.n} images and {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
