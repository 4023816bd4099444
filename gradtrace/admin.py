"""`gradtrace-admin`: create users and tokens, revoke tokens."""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from jobs.auth import get_or_create_user, issue_token, revoke_token
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.errors import DomainError
from jobs.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradtrace-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-token", help="create a token (and the user if new)")
    create.add_argument("user")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    create.add_argument("--label", default="")
    create.add_argument("--expires-days", type=float, default=None)
    revoke = sub.add_parser("revoke-token", help="revoke a token by its id")
    revoke.add_argument("token_id")
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings or Settings.from_env()
    factory = make_sessionmaker(make_engine(settings.database_url))
    try:
        with session_scope(factory) as session:
            if args.command == "create-token":
                user = get_or_create_user(session, args.user, is_admin=args.admin)
                expires = timedelta(days=args.expires_days) if args.expires_days else None
                row, secret = issue_token(session, user, settings.token_pepper,
                                          label=args.label, expires_in=expires)
                print(secret)
                print(f"token id {row.id} for user {user.name}", file=sys.stderr)
            else:
                revoke_token(session, args.token_id)
                print(f"revoked {args.token_id}", file=sys.stderr)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
