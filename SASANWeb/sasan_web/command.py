"""The ``sasan web`` subcommand, added to the engine's ``sasan`` command through the entry point group
``sasan.commands`` (pyproject.toml): the engine never imports the web front. Standard library only."""
from __future__ import annotations

import argparse


def add_command(commands) -> None:
    """Add ``web`` to the ``sasan`` command's subparsers ``commands``."""
    web = commands.add_parser("web", help="serve the Slicer module's workflow to a browser (pip install -e '.[web]')")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--data", help="folder whose volumes the page may open")
    web.add_argument("--models", help="folder whose model files the page may use")
    web.add_argument("--token", help="the token a browser must present (default: $SASAN_WEB_TOKEN or a new one)")
    web.add_argument("--max-upload-mb", type=float, default=1024, help="largest upload accepted (default: 1024)")
    web.set_defaults(handler=_web)


def _web(args: argparse.Namespace) -> int:
    from .server import serve  # trame-slicer: imported only when the server starts

    return serve(args.host, args.port, args.data, args.models, args.token, args.max_upload_mb)
