"""User-facing apps: one module (or package) per app, each with ``main(argv=None) -> int``.

``python -m gifemo <app> ARGS`` runs ``gifemo.apps.<app>.main`` (``python -m gifemo`` lists the
apps); ``python -m gifemo.apps.<app> ARGS`` works too. To add an app, add
``gifemo/apps/<name>.py`` (or a package ``gifemo/apps/<name>/`` whose ``__init__`` exports
``main``) with an argparse ``main``: nothing else to register. See docs/architecture.md.
"""
