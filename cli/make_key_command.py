"""``make-key``: a new API key, shown once, and the hash line the service is configured with."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Generate a random API key (cr_<id>_<64 hex digits>: 256 random bits) and the line the service
stores for it instead, <id>:<scopes>:<salt hex>:<HMAC-SHA-256(salt, key) hex>.

stdout gets only the line to configure, as RETRIEVAL_API_KEYS=<hash line> (--format env, the
default; append it to .env with `centroid-retrieval make-key >> .env`) or the bare hash line
(--format line, for RETRIEVAL_API_KEYS_FILE). Several keys: join their hash lines with ';' in
RETRIEVAL_API_KEYS, or one per line in the file. The key itself goes to stderr, once: give it to
the client (Authorization: Bearer <key>, or X-API-Key: <key>); it is stored nowhere and cannot
be recovered from the hash line. Scopes: read (search, get and list items, /info), write
(enroll, delete images and items), admin (maintenance)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "make-key",
        help="generate an API key and the hash line that configures the service with it",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scopes",
        default="read",
        help="comma-separated scopes of the key: read, write, admin (default: %(default)s)",
    )
    parser.add_argument(
        "--id",
        dest="key_id",
        default=None,
        help="the key's name, [A-Za-z0-9-]{1,64}, shown in logs; not secret "
        "(default: 8 random hex digits)",
    )
    parser.add_argument(
        "--format",
        choices=("env", "line"),
        default="env",
        help="env: RETRIEVAL_API_KEYS=<hash line>; line: the hash line alone "
        "(default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Standard library only, so this works in an install without the service's runtime.
    from app.api_keys import ApiKeyConfigError, make_key, parse_scopes

    try:
        key, record = make_key(args.key_id, parse_scopes(args.scopes))
    except ApiKeyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    line = record.hash_line()
    print(line if args.format == "line" else f"RETRIEVAL_API_KEYS={line}")
    scopes = ",".join(sorted(s.value for s in record.scopes))
    print(
        f"API key {record.key_id!r} ({scopes}); shown only now, give it to the client:\n{key}",
        file=sys.stderr,
    )
    return 0
