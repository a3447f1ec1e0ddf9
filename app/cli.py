"""The ``patron`` command: serve, migrate, worker, program, api-key, token-key, audit, import,
demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from app import db
from app.config import get_settings
from app.migrate import upgrade


def _database_url() -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    url = db.resolve_database_url()
    # Child processes (uvicorn workers) must reach the same server without starting another.
    os.environ["PATRON_DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


def _run(work: Callable[[], Awaitable[Any]], migrate: bool = True) -> Any:
    url = _database_url()
    if migrate:
        upgrade(url)

    async def main() -> Any:
        db.configure(db.make_engine(url))
        try:
            return await work()
        finally:
            await db.dispose()

    return asyncio.run(main())


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    url = _database_url()
    upgrade(url)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through Python instead of
    # the default handler lets the embedded PostgreSQL stop with the service (atexit).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if args.server == "granian":
        _serve_with_granian(args)
        return 0
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=get_settings().log_level,
        # A worker still importing on a busy machine must not be killed as unresponsive.
        timeout_worker_healthcheck=30,
    )
    return 0


def _serve_with_granian(args: argparse.Namespace) -> None:
    """The same application on granian (a Rust HTTP server): an option, measured against
    uvicorn in bench/run.py (``--server``); see docs/performance.md."""
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        "app.main:create_app",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        log_access=False,
        log_level=LogLevels(get_settings().log_level),
    ).serve()


def cmd_migrate(args: argparse.Namespace) -> int:
    upgrade(_database_url(), args.revision)
    print(f"migrated to {args.revision}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.worker import run_forever

    configure_logging(get_settings().log_level)
    _run(lambda: run_forever(args.interval))
    return 0


def cmd_program_create(args: argparse.Namespace) -> int:
    from app.services.programs.programs import create_program

    program_id, key = _run(lambda: create_program(args.name, args.currency))
    if args.json:
        print(json.dumps({"program_id": program_id, "api_key": key}))
    else:
        print(f"program {program_id} created")
        print(f"admin API key (shown once): {key}")
    return 0


def cmd_api_key_create(args: argparse.Namespace) -> int:
    from app.services.programs.programs import create_api_key

    scopes = [s for part in args.scopes for s in part.replace(",", " ").split()]
    from app.schemas.programs import SCOPES

    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        print(
            f"unknown or missing scopes: {unknown}; choose from {', '.join(SCOPES)}",
            file=sys.stderr,
        )
        return 2
    _, created = _run(lambda: create_api_key(args.program, args.name, scopes, None))
    if args.json:
        print(json.dumps({"id": created.id, "api_key": created.key}))
    else:
        print(f"API key {created.id} created with scopes {' '.join(created.scopes)}")
        print(f"key (shown once): {created.key}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from app.services.ledger.audit import audit

    violations = _run(lambda: audit(args.program), migrate=False)
    for violation in violations:
        print(violation)
    if violations:
        members = {(v.program_id, v.member) for v in violations}
        print(f"audit failed: {len(members)} member(s) break an invariant", file=sys.stderr)
        return 1
    print("audit passed: every invariant holds")
    return 0


def cmd_token_key_rotate(args: argparse.Namespace) -> int:
    from app.services.members.member_tokens import rotate_signing_keys

    rotation = _run(lambda: rotate_signing_keys(retire_all_others=args.retire_all_others))
    if args.json:
        print(
            json.dumps(
                {
                    "new_kid": rotation.new_kid,
                    "retired": rotation.retired,
                    "active": rotation.active,
                }
            )
        )
    else:
        print(f"member token key {rotation.new_kid} added; it signs new tokens")
        retired = ", ".join(map(str, rotation.retired)) or "none"
        print(f"retired: {retired}; verifying: {', '.join(map(str, rotation.active))}")
    return 0


def cmd_token_key_list(args: argparse.Namespace) -> int:
    from app.services.members.member_tokens import list_signing_keys

    keys = _run(list_signing_keys)
    rows = [
        {
            "kid": key.kid,
            "created_at": key.created_at.isoformat(),
            "retired_at": key.retired_at.isoformat() if key.retired_at else None,
        }
        for key in keys
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            state = f"retired {row['retired_at']}" if row["retired_at"] else "active"
            print(f"{row['kid']}\tcreated {row['created_at']}\t{state}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from app.services.imports.cli import run_import_file

    try:
        handle = open(args.file, "rb")  # noqa: SIM115 - closed below, after the import ran
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with handle:
        report = _run(
            lambda: run_import_file(
                args.program, args.type, handle, args.dry_run, progress=sys.stderr.isatty()
            )
        )
    if report is None:
        print(f"no program {args.program}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str))
    return 0 if report["status"] == "done" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from app.services.demo import seed_demo

    program_id, key = _run(seed_demo)
    print(f"demo program {program_id} seeded")
    print(f"admin API key (shown once): {key}")
    print("try: curl -H 'Authorization: Bearer <key>' http://127.0.0.1:8000/v1/members")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patron", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="the HTTP server (granian needs the 'granian' extra)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="run database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser("worker", help="run the periodic jobs")
    worker.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    worker.set_defaults(func=cmd_worker)

    program = sub.add_parser("program", help="manage programs").add_subparsers(
        dest="action", required=True
    )
    create = program.add_parser("create", help="create a program and its admin key")
    create.add_argument("--name", required=True)
    create.add_argument("--currency", required=True, help="ISO 4217 code, e.g. CNY")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_program_create)

    api_key = sub.add_parser("api-key", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = api_key.add_parser("create", help="create an API key")
    key_create.add_argument("--program", type=int, required=True)
    key_create.add_argument("--scopes", nargs="+", required=True)
    key_create.add_argument("--name", default="cli")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(func=cmd_api_key_create)

    token_key = sub.add_parser(
        "token-key", help="manage the keys that sign member tokens"
    ).add_subparsers(dest="action", required=True)
    rotate = token_key.add_parser(
        "rotate",
        help="add a signing key; retire keys replaced more than 24 h ago (docs/member-tokens.md)",
    )
    rotate.add_argument(
        "--retire-all-others",
        action="store_true",
        help="also retire every older key now (a leaked key): every member app must log in again",
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_token_key_rotate)
    key_list = token_key.add_parser("list", help="list signing keys (never their secrets)")
    key_list.add_argument("--json", action="store_true")
    key_list.set_defaults(func=cmd_token_key_list)

    audit = sub.add_parser("audit", help="check the ledger invariants")
    audit.add_argument("--program", type=int, default=None)
    audit.set_defaults(func=cmd_audit)

    import_ = sub.add_parser(
        "import", help="import members, opening balances or orders from a JSON Lines file"
    )
    import_.add_argument("type", choices=["members", "balances", "orders"])
    import_.add_argument("file", help="JSON Lines, one object per line (docs/imports.md)")
    import_.add_argument("--program", type=int, required=True)
    import_.add_argument(
        "--dry-run", action="store_true", help="report what would happen, write nothing"
    )
    import_.set_defaults(func=cmd_import)

    demo = sub.add_parser("demo", help="seed a demo program and print its admin key")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
