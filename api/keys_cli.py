"""threadview-keys: create (printing the key once), list and revoke API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.keys import Kind
from services.mongo.bootstrap import bootstrap
from services.settings import get_settings
from services.views import ViewError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadview-keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it (the only time)")
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--user", help="a user key: sees this user's threads (usr_...)")
    owner.add_argument("--service", action="store_true", help="a service key: every thread")
    create.add_argument(
        "--org",
        action="append",
        required=True,
        dest="orgs",
        help="an organization the key may see; repeat for several",
    )
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


async def _run(args: argparse.Namespace) -> int:
    try:
        services = await bootstrap(get_settings())
    except ViewError as exc:  # NotMigrated: the store lacks what this release needs
        print(f"threadview-keys: {exc}", file=sys.stderr)
        return 2
    try:
        keys = services.keys
        if args.command == "create":
            kind: Kind = "service" if args.service else "user"
            key, plaintext = await keys.create(kind, args.orgs, args.user)
            print(plaintext)
            print(
                f"key {key.id}: {kind} key for {', '.join(key.organization_ids)}"
                + (f" as {key.user_id}" if key.user_id else "")
                + ". Store it now: it is not shown again.",
                file=sys.stderr,
            )
        elif args.command == "list":
            for key in await keys.list():
                state = (
                    f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "active"
                )
                print(
                    f"{key.id}\t{key.kind}\t{key.user_id or '-'}\t"
                    f"{','.join(key.organization_ids)}\t{key.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}"
                )
        elif not await keys.revoke(args.key_id):
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.key_id}", file=sys.stderr)
        return 0
    finally:
        await services.close()


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
