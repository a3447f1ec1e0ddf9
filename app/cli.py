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


def _migrate(revision: str = "head") -> None:
    """Migrations go over ``PATRON_MIGRATION_DATABASE_URL`` (a direct connection, never a
    transaction-mode pooler), by default the service's own URL."""
    _database_url()
    upgrade(db.resolve_migration_url(), revision)


def _run(work: Callable[[], Awaitable[Any]], migrate: bool = False, *, durable: bool = True) -> Any:
    """Run ``work`` on a pool of its own; the schema is touched only when asked (``--migrate``):
    behind a pooler, or with several replicas starting, migrating is one deliberate step."""
    url = _database_url()
    if migrate:
        _migrate()
    # Throw-away data (the demo) need not wait for each commit to reach the disk; asyncpg
    # passes a URL's unknown parameters on as session settings.
    engine_url = url if durable else _with_setting(url, "synchronous_commit", "off")

    async def main() -> Any:
        db.configure(db.make_engine(engine_url))
        try:
            return await work()
        finally:
            await db.dispose()

    return asyncio.run(main())


def _with_setting(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def cmd_serve(args: argparse.Namespace) -> int:
    if args.migrate:
        _migrate()
    else:
        _database_url()
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through Python instead of
    # the default handler lets the embedded PostgreSQL stop with the service (atexit).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    supervisor = _start_worker(args)
    try:
        if args.server == "granian":
            _serve_with_granian(args)
        else:
            _serve(args)
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0


def _start_worker(args: argparse.Namespace) -> Any:
    """The periodic jobs in a supervised child process, unless ``--no-worker``."""
    if args.no_worker:
        return None
    from app.logs import configure_logging
    from app.worker_supervisor import WorkerSupervisor

    configure_logging(get_settings().log_level)
    supervisor = WorkerSupervisor()
    supervisor.start()
    return supervisor


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_served_app",
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


def _serve_with_granian(args: argparse.Namespace) -> None:
    """The same application on granian (a Rust HTTP server): an option, measured against
    uvicorn in bench/run.py (``--server``); see docs/performance.md."""
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        "app.main:create_served_app",
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
    _migrate(args.revision)
    print(f"migrated to {args.revision}")
    if args.citus:
        _distribute_on_citus()
    return 0


def _distribute_on_citus() -> None:
    from app.citus import distribute

    for action in asyncio.run(distribute(db.resolve_migration_url())):
        print(action)
    print("distributed on Citus: tenant tables by program_id, the others as reference tables")


def cmd_worker(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.worker import run_forever

    configure_logging(get_settings().log_level)
    _run(lambda: run_forever(args.interval), migrate=args.migrate)
    return 0


def cmd_program_create(args: argparse.Namespace) -> int:
    from app.services.programs.programs import create_program

    program_id, key = _run(lambda: create_program(args.name, args.currency), migrate=args.migrate)
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
    _, created = _run(
        lambda: create_api_key(args.program, args.name, scopes, None), migrate=args.migrate
    )
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

    rotation = _run(
        lambda: rotate_signing_keys(retire_all_others=args.retire_all_others), migrate=args.migrate
    )
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

    keys = _run(list_signing_keys, migrate=args.migrate)
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

    program_id, key = _run(seed_demo, migrate=args.migrate, durable=False)
    print(f"demo program {program_id} seeded: a tea shop with 18 months of history")
    print(f"admin API key (shown once): {key}")
    print(f"try: curl -H 'Authorization: Bearer {key}' http://127.0.0.1:8000/v1/insights/overview")
    print("or open http://127.0.0.1:8000/dashboard and paste the key")
    return 0


def _migrate_option() -> argparse.ArgumentParser:
    """``--migrate`` for the commands that use the database: they leave the schema alone
    unless asked."""
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument(
        "--migrate", action="store_true", help="run the migrations first (a direct connection)"
    )
    return option


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patron", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    migrating = _migrate_option()

    serve = sub.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="serve without touching the schema (run `patron migrate` once, directly)",
    )
    serve.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="the HTTP server (granian needs the 'granian' extra)",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run the periodic jobs beside the server (run `patron worker` instead)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="run database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument(
        "--citus",
        action="store_true",
        help="then distribute the tables on Citus (tenant tables by program_id)",
    )
    migrate.set_defaults(func=cmd_migrate)

    worker = sub.add_parser("worker", help="run the periodic jobs", parents=[migrating])
    worker.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    worker.set_defaults(func=cmd_worker)

    program = sub.add_parser("program", help="manage programs").add_subparsers(
        dest="action", required=True
    )
    create = program.add_parser(
        "create", help="create a program and its admin key", parents=[migrating]
    )
    create.add_argument("--name", required=True)
    create.add_argument("--currency", required=True, help="ISO 4217 code, e.g. CNY")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_program_create)

    api_key = sub.add_parser("api-key", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = api_key.add_parser("create", help="create an API key", parents=[migrating])
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
        parents=[migrating],
    )
    rotate.add_argument(
        "--retire-all-others",
        action="store_true",
        help="also retire every older key now (a leaked key): every member app must log in again",
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_token_key_rotate)
    key_list = token_key.add_parser(
        "list", help="list signing keys (never their secrets)", parents=[migrating]
    )
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

    demo = sub.add_parser(
        "demo", help="seed a demo program and print its admin key", parents=[migrating]
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_cli_logging(quiet_database=args.command not in ("serve", "worker"))
    try:
        code: int = args.func(args)
    except Exception as exc:
        from app.cli_errors import explain

        explained = explain(exc, os.environ.get("PATRON_DATABASE_URL"))
        if explained is None:
            raise
        message, code = explained
        print(f"patron: {message}", file=sys.stderr)
    return code


def _configure_cli_logging(*, quiet_database: bool) -> None:
    """JSON log lines on stderr for every command (where the embedded PostgreSQL keeps its
    data, the worker's jobs), without Alembic's line per migration step. A one-off command
    that cannot reach the database says so in one line of its own (``app.cli_errors``)
    instead of the service's outage warnings."""
    import logging

    from app.logs import configure_logging

    configure_logging(get_settings().log_level)
    # The embedded server's own lines (initdb, pg_ctl output) are for when it fails.
    for name in ("alembic", "pgserver"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if quiet_database:
        logging.getLogger("patron.db").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
