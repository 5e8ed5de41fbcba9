"""``enroll-folder``: enroll ROOT/<item>/* into a running service, resumably."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from client.enroll_folder import EmptyFolderError, FolderEnrollment
from client.enroll_state import DEFAULT_STATE_NAME, EnrollState, EnrollStateError
from client.item_ids import ItemIdError
from client.service_error import ServiceError

API_KEY_VARIABLE = "CENTROID_RETRIEVAL_API_KEY"
DESCRIPTION = f"""\
Enroll every sub-folder of ROOT as one item: ROOT/<item>/*.jpg (also .jpeg .png .webp .bmp
.gif; names starting with "." are skipped) goes to POST /items/<prefix><item>/images. A folder
name that is not a valid item id ([A-Za-z0-9._:-], at most 128 with the prefix) is mapped to
one: invalid characters become "_" and a short hash of the name is appended; the same name
always maps to the same id.

Uploads go in batches within the service's own limits (files and bytes per request, read from
GET /info). One line per file: enrolled, duplicate (the item already held those bytes),
skipped-already (enrolled by an earlier run), or rejected (with the service's reason, e.g. not
an image); then a summary. Exit status 0 when every file is enrolled, 1 otherwise.

Resumable: the state file (ROOT/{DEFAULT_STATE_NAME} unless --state)
records, per service URL and item, the sha256 of each file the service accepted and the image
id it answered, and is saved after every accepted upload. A re-run, after an interruption or
with files added, skips a file whose recorded image id the item still holds (one
GET /items/<id> per item) and sends the rest: files deleted from the service since, or a wiped
service, are enrolled again. Without the state file a re-run sends everything again, which the
service absorbs (it keeps one copy per content) at the cost of the uploads.

A service with API keys: put a key with the read and write scopes in the environment as
CENTROID_RETRIEVAL_API_KEY=cr_... (not a flag: flags show in the process list)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "enroll-folder",
        help="enroll a folder of photos, one item per sub-folder (resumable)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", type=Path, metavar="ROOT", help="one sub-folder of photos per item")
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)"
    )
    parser.add_argument(
        "--prefix",
        default="",
        help="prepended to every item id, e.g. shop1: (default: none)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help=f"the resume state file (default: ROOT/{DEFAULT_STATE_NAME})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for one answer of the service (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    state_path: Path = args.state or args.root / DEFAULT_STATE_NAME
    try:
        state = EnrollState.load(state_path, args.url)
    except (EnrollStateError, OSError) as exc:
        return _error(str(exc))
    key = os.environ.get(API_KEY_VARIABLE)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=args.url, timeout=args.timeout, headers=headers) as client:
        enrollment = FolderEnrollment(client, args.root, state, sys.stdout, sys.stderr)
        try:
            summary = enrollment.run(args.prefix)
        except (ServiceError, EmptyFolderError, ItemIdError, OSError) as exc:
            return _error(str(exc), enrollment)
        except httpx.TransportError as exc:
            return _error(f"cannot talk to the service at {args.url}: {exc}", enrollment)
        except KeyboardInterrupt:
            return _error("interrupted; the same command resumes", enrollment, status=130)
    print(summary.line(), flush=True)
    return 0 if summary.ok else 1


def _error(message: str, enrollment: FolderEnrollment | None = None, status: int = 1) -> int:
    if enrollment is not None and enrollment.summary.items:
        print(f"{enrollment.summary.line()} (stopped early)", flush=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status
