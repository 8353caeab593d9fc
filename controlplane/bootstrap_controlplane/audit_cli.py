"""bs-controlplane commands for the audit trail (verify, export, checkpoints, schema) and for backups,
and the --url option that lets mint, profile set and audit list act through the API."""
import json
import sys
from pathlib import Path

from . import audit, backup, checkpoints, events, store
from .remote import ADMIN_KEY_ENV, AdminApi, RemoteError


def _cli():
    from . import cli  # cli imports this module to build its parser
    return cli


def add_target(parser):
    """--data DIR (work on the data dir) or --url URL (act through the API with the admin key)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="the data dir to work on directly")
    where.add_argument("--url", help="act through the API of the control plane at this https:// URL")
    parser.add_argument("--ca", help="with --url: the CA bundle to trust (default: the system's)")
    parser.add_argument("--admin-key-file", help=f"with --url: the admin key (default: ${ADMIN_KEY_ENV})")


def remote(args):
    """The API client when --url was given, else None."""
    if not getattr(args, "url", None):
        return None
    try:
        return AdminApi(args.url, args.ca, args.admin_key_file)
    except RemoteError as exc:
        raise _cli().CliError(str(exc))


def call(function, *args):
    try:
        return function(*args)
    except (RemoteError, backup.BackupError, audit.ExportError) as exc:
        raise _cli().CliError(str(exc))


def _pinned_keys(path):
    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise _cli().CliError(f"cannot read the checkpoint keys {path}: {exc}")
    return doc["keys"] if isinstance(doc, dict) and "keys" in doc else doc


def cmd_audit_verify(args):
    keys = _pinned_keys(args.keys)
    if args.file:
        try:
            with open(args.file) as handle:
                rows, stored, exported_keys = call(audit.read_export, handle)
        except OSError as exc:
            raise _cli().CliError(f"cannot read {args.file}: {exc.strerror}")
        report = audit.verify_events(rows, stored, keys if keys is not None else exported_keys)
    else:
        report = audit.verify(store.connect(_cli()._data_dir(args.data)), keys=keys)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_audit_export(args):
    conn = store.connect(_cli()._data_dir(args.data))
    out = open(args.out, "x") if args.out else sys.stdout
    try:
        count = 0
        for line in audit.export_lines(conn):
            out.write(line + "\n")
            count += 1
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"wrote {count} lines to {args.out}; check it with `bs-controlplane audit verify --file {args.out}`")


def cmd_audit_checkpoint(args):
    done = audit.checkpoint_head(store.connect(_cli()._data_dir(args.data)))
    print(f"checkpoint at seq {done['seq']} (key {done['kid']})" if done else "the audit log is empty")


def cmd_audit_rotate_key(args):
    data = _cli()._data_dir(args.data)
    # Under the database's write lock: no append picks the old key while its private half is removed.
    with store.Transaction(store.connect(data)):
        kid, retired = checkpoints.rotate(data)
    print(f"checkpoint key: {kid}; retired (public key kept, private key destroyed): {', '.join(retired) or '-'}")


def cmd_audit_schema(args):
    print(json.dumps(events.SCHEMA, indent=2))


def cmd_backup(args):
    data = _cli()._data_dir(args.data)
    made = call(backup.create, data, args.out, args.key_file)
    if made["key_created"]:
        print(f"created the backup key {made['key_path']} ({made['key_id']}): keep a copy apart from the backups; "
              "restore needs it")
    report = made["report"]
    print(f"backup {made['path']}: {made['files']} files, {report.total} audit events, key {made['key_id']}")
    for path in backup.prune(Path(args.out).parent):
        print(f"pruned {path} (older than 7 days)")
    if not report.ok:
        print("WARNING: the audit trail in this backup does not verify; restore will refuse it:\n  "
              + "\n  ".join(report.lines()))
        return 1
    return 0


def cmd_restore(args):
    restored = call(backup.restore, args.source, args.data, args.key_file)
    print(f"restored {args.data} from {args.source} (made {restored['created']}); "
          + restored["report"].lines()[-1])


def register(sub, audit_sub):
    s = audit_sub.add_parser("verify", help="recompute the chain and check the signed checkpoints")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--data")
    where.add_argument("--file", help="an `audit export` file, verified on its own")
    s.add_argument("--keys", help="trust only these checkpoint public keys (a saved GET /v1/audit/checkpoint-keys)")
    s.set_defaults(func=cmd_audit_verify)
    s = audit_sub.add_parser("export", help="the log as JSON lines, with its chain, checkpoints and keys")
    s.add_argument("--data", required=True)
    s.add_argument("--out", help="write here (must not exist) instead of stdout")
    s.set_defaults(func=cmd_audit_export)
    s = audit_sub.add_parser("checkpoint", help="sign the chain head now")
    s.add_argument("--data", required=True)
    s.set_defaults(func=cmd_audit_checkpoint)
    s = audit_sub.add_parser("rotate-key", help="a new checkpoint key; the old one's private half is destroyed")
    s.add_argument("--data", required=True)
    s.set_defaults(func=cmd_audit_rotate_key)
    s = audit_sub.add_parser("schema", help="print the JSON Schema of audit events")
    s.set_defaults(func=cmd_audit_schema)

    s = sub.add_parser("backup", help="an encrypted backup of the data dir; prunes backups older than 7 days")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help=f"the backup file (name it *{backup.SUFFIX}); its folder is pruned")
    s.add_argument("--key-file", help=f"the backup key (default: ${backup.KEY_ENV}, else DATA/{backup.KEY_NAME})")
    s.set_defaults(func=cmd_backup)
    s = sub.add_parser("restore", help="verify a backup and restore it into a fresh data dir")
    s.add_argument("--data", required=True, help="the new data dir (must not exist or be empty)")
    s.add_argument("--from", dest="source", required=True)
    s.add_argument("--key-file", help=f"the backup key (default: ${backup.KEY_ENV})")
    s.set_defaults(func=cmd_restore)
