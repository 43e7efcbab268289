"""``python -m gifemo <app> [ARGS]``: run ``gifemo.apps.<app>.main(ARGS)``; alone, list the apps.

An app is any module ``gifemo/apps/<name>.py`` or package ``gifemo/apps/<name>/`` with a
``main(argv: list[str] | None = None) -> int``; it is found by name (nothing to register).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

import gifemo.apps


def available_apps() -> dict[str, str]:
    """{app name: first line of its docstring} of every module/package under gifemo/apps/."""
    out: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(gifemo.apps.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        spec = info.module_finder.find_spec(info.name, None)  # type: ignore[call-arg]
        out[info.name] = _summary(spec.origin if spec else None)
    return out


def _summary(path: str | None) -> str:
    """The first docstring line of a source file, read without importing it (imports are slow)."""
    import ast

    if not path or not path.endswith(".py"):
        return ""
    try:
        doc = ast.get_docstring(ast.parse(open(path, encoding="utf-8").read()))
    except (OSError, SyntaxError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def usage() -> str:
    apps = available_apps()
    width = max((len(n) for n in apps), default=0)
    lines = [
        "usage: python -m gifemo <app> [ARGS]   (python -m gifemo <app> --help for its options)",
        "",
        "apps:",
    ]
    lines += [f"  {name:<{width}}  {doc}" for name, doc in apps.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    apps = available_apps()
    if name not in apps:
        print(f"unknown app {name!r}; choose from: {', '.join(apps)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"gifemo.apps.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
