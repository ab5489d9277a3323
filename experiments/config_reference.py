"""Print the configuration reference, or write it into the README.

python -m experiments.config_reference [--write README.md]
"""

import argparse

from purejax import config_reference


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", metavar="README", help="fill the reference block of this file")
    args = parser.parse_args()
    if args.write:
        with open(args.write, encoding="utf-8") as f:
            text = config_reference.update_readme(f.read())
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(config_reference.markdown())


if __name__ == "__main__":
    main()
