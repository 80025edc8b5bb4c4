"""Print the third-party requirements of ragtune packages, one per line, for an image's dependency layer.

Usage (in a Dockerfile, before the sources are copied): ``python dependencies.py services/common
"services/generator[cpu]" > requirements.txt``. Each argument is a package directory holding a
pyproject.toml, with optional extras in brackets; requirements on ragtune's own packages are left out
(they are installed from the sources afterwards, with --no-deps). So the dependency layer is rebuilt only
when a pyproject.toml changes, not when the code does.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

OWN = re.compile(r"^ragtune[-_]", re.IGNORECASE)


def requirements(argument: str) -> list[str]:
    """The requirements of one ``directory[extra,...]`` argument: its dependencies, then its extras'."""
    match = re.fullmatch(r"(?P<directory>[^\[\]]+)(?:\[(?P<extras>[^\]]*)\])?", argument)
    if match is None:
        raise SystemExit(f"dependencies.py: not a package directory with optional [extras]: {argument!r}")
    project = tomllib.loads((Path(match["directory"]) / "pyproject.toml").read_text())["project"]
    found = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in filter(None, (e.strip() for e in (match["extras"] or "").split(","))):
        if extra not in optional:
            raise SystemExit(f"dependencies.py: {match['directory']} has no extra {extra!r}")
        found += optional[extra]
    return [r for r in found if not OWN.match(r)]


def main(arguments: list[str]) -> None:
    seen: list[str] = []
    for argument in arguments:
        seen += [r for r in requirements(argument) if r not in seen]
    print("\n".join(seen))


if __name__ == "__main__":
    main(sys.argv[1:])
