"""bs-controlplane: every command works on the data dir directly, safely alongside a running server."""
import argparse
import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import yaml

from . import audit, audit_cli, enrollment, envelope, keys, profiles, store, tokens
from .errors import ApiError
from .util import CONFIG_NAME, DEFAULT_CONFIG, atomic_write, epoch_iso, load_config, now_iso, write_new_file


class CliError(Exception):
    pass


CLIENT_TIMEOUT = 3  # seconds a client may pause while sending a request
LISTEN_BACKLOG = 256  # connections the kernel queues before the server accepts them


def _data_dir(path):
    data = Path(path)
    if not (data / CONFIG_NAME).is_file():
        raise CliError(f"{data} is not a control-plane data dir (run `bs-controlplane init --data {data}`)")
    return data


def cmd_init(args):
    data = Path(args.data)
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise CliError(f"{data} exists already; refusing to overwrite a data dir")
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    config = dict(DEFAULT_CONFIG)
    if args.issuer:
        config["issuer"] = args.issuer
    write_new_file(data / CONFIG_NAME, json.dumps(config, indent=1) + "\n", 0o600)
    store.create(data).close()
    os.chmod(data / "controlplane.db", 0o600)
    keys.generate_signing_key(data)
    write_new_file(data / "admin.key", secrets.token_urlsafe(32) + "\n", 0o600)
    keys.create_tls(data, config["issuer"])
    print(f"initialised {data} (issuer {config['issuer']}); admin key in {data / 'admin.key'}")


def cmd_serve(args):
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    from .app import ControlPlaneApp

    data = _data_dir(args.data)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise CliError("--listen must be HOST:PORT")
    app = ControlPlaneApp(data, rate_limit=args.rate_limit, test_redeem_delay=args.test_redeem_delay)
    rotate_interval = (args.rotate_interval if args.rotate_interval is not None
                       else app.config.get("rotate_interval", keys.DEFAULT_ROTATE_INTERVAL))
    # A client that stops sending mid-request holds a worker thread until this socket timeout: keep
    # it short so that a few stalled clients cannot starve the others for long (cheroot's default is 10 s).
    # The listen backlog: cheroot's default of 5 drops the SYNs of a burst of new connections (a fleet
    # starting at once), and each dropped one waits a full second for its retransmission.
    server = wsgi.Server((host, int(port)), app, numthreads=args.threads, server_name="bootstrap-saas",
                         timeout=CLIENT_TIMEOUT, request_queue_size=LISTEN_BACKLOG)
    server.ssl_adapter = BuiltinSSLAdapter(str(data / "server.pem"), str(data / "server-key.pem"))
    server.prepare()
    bound_host, bound_port = server.bind_addr[:2]
    state = data / "server.json"
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve, name="cheroot", daemon=True)
    thread.start()
    atomic_write(state, json.dumps({"url": f"https://{bound_host}:{bound_port}", "pid": os.getpid()}), 0o644)
    sys.stderr.write(f"serving https://{bound_host}:{bound_port}\n")
    sys.stderr.flush()
    try:
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
            # The server rotates its signing key by age on its own; the KeyRing notices the new files.
            rotated = keys.rotate_if_due(data, app.config, rotate_interval)
            if rotated:
                sys.stderr.write(f"rotated the signing key by age: current {rotated[0]}, retired "
                                 f"{', '.join(rotated[1]) or '-'}, dropped {', '.join(rotated[2]) or '-'}\n")
                sys.stderr.flush()
    finally:
        try:
            state.unlink()
        except FileNotFoundError:
            pass
        server.stop()
        sys.stderr.write("stopped\n")


def _load_manifest(path):
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except ValueError:
        return yaml.safe_load(text)


def cmd_profile_set(args):
    api = audit_cli.remote(args)
    if api:
        result = audit_cli.call(api.set_profile, args.name, _load_manifest(args.file))
    else:
        result = profiles.set_profile(store.connect(_data_dir(args.data)), args.name, _load_manifest(args.file),
                                      args.actor)
    print(f"profile {result['name']} version {result['version']}")


def cmd_user_key_new(args):
    try:
        envelope.write_user_key(args.out)
    except FileExistsError:
        raise CliError(f"{args.out} exists already; refusing to overwrite a key")
    print(f"wrote a new user key to {args.out}")


def _user_keys(path):
    try:
        return envelope.parse_user_keys(Path(path).read_text())
    except envelope.KeyFileError as exc:
        raise CliError(f"{path}: {exc}")


def cmd_credential_put(args):
    conn = store.connect(_data_dir(args.data))
    tokens.check_name("user", args.user)
    tokens.check_name("credential", args.name)
    kid, key = _user_keys(args.key_file)[0]
    plaintext = Path(args.from_file).read_bytes()
    with store.Transaction(conn):
        previous = store.latest_credential(conn, args.user, args.name)
        version = previous["version"] + 1 if previous else 1
        compact = envelope.encrypt(kid, key, args.name, args.user, version, plaintext)
        store.insert_credential(conn, args.user, args.name, version, kid, compact, now_iso())
    print(f"credential {args.name} of {args.user}: version {version} (key {kid})")


def cmd_credential_rotate_key(args):
    """Re-encrypt the newest version of each of a user's credentials to a new key, here on the client.

    Everything is decrypted before anything is written, inside one transaction: a credential that
    the old key file cannot open stops the rotation with nothing changed.
    """
    conn = store.connect(_data_dir(args.data))
    tokens.check_name("user", args.user)
    old_keys = _user_keys(args.key_file)
    new_kid = new_key = created = None
    if args.new_key_file and Path(args.new_key_file).exists():
        new_kid, new_key = _user_keys(args.new_key_file)[0]
    elif args.new_key_file:
        created = envelope.new_user_key_set()
        new_kid, new_key = envelope.parse_user_keys(json.dumps(created))[0]
    with store.Transaction(conn):
        opened = []
        for row in store.latest_credentials_of_user(conn, args.user):
            if new_kid is not None and envelope.header_kid(row["envelope"]) == new_kid:
                continue
            try:
                plaintext = envelope.decrypt(old_keys, row["envelope"], row["name"], args.user)
            except envelope.EnvelopeOpenError as exc:
                raise CliError(f"{exc}; nothing was rotated")
            opened.append((row, plaintext))
        # Key files are written only once every credential opened.
        if created:
            envelope.write_user_key(args.new_key_file, created)
        elif new_kid is None:
            new_kid, new_key = envelope.add_new_key(args.key_file)  # the old keys stay after the new one
        for row, plaintext in opened:
            version = row["version"] + 1
            compact = envelope.encrypt(new_kid, new_key, row["name"], args.user, version, plaintext)
            store.insert_credential(conn, args.user, row["name"], version, new_kid, compact, now_iso())
    rotated = ", ".join(f"{row['name']} v{row['version'] + 1}" for row, _ in opened) or "none"
    print(f"credentials of {args.user} now under key {new_kid}: {rotated}")


def cmd_mint(args):
    api = audit_cli.remote(args)
    if api:
        print(audit_cli.call(api.mint, args.profile, args.user, args.ttl)["token"])
        return
    data = _data_dir(args.data)
    config = load_config(data)
    conn = store.connect(data)
    answer = tokens.mint_provisioning(conn, keys.KeyRing(data, config), config, args.profile, args.user,
                                      args.ttl, "cli")
    print(answer["token"])


def cmd_enrollment_key_new(args):
    conn = store.connect(_data_dir(args.data))
    key_id, value, expires_at = enrollment.create(conn, args.profile, args.user, args.expires)
    # The value on stdout (for a pipe into a secret store), the description on stderr.
    print(value)
    print(f"enrollment key {key_id}: mints tokens for profile {args.profile}, user {args.user}, "
          f"until {epoch_iso(expires_at)}", file=sys.stderr)


def cmd_enrollment_key_revoke(args):
    revoked_at = enrollment.revoke(store.connect(_data_dir(args.data)), args.key_id)
    print(f"enrollment key {args.key_id} revoked at {epoch_iso(revoked_at)}")


def cmd_audit_list(args):
    api = audit_cli.remote(args)
    events = audit_cli.call(api.audit_events) if api else audit.list_events(store.connect(_data_dir(args.data)))
    if args.json:
        print(json.dumps(events, indent=1))
        return
    print(f"{'seq':>6}  {'time':<27}  {'type':<22}  {'actor':<28}  {'run_id':<32}  subject")
    for e in events:
        print(f"{e['seq']:>6}  {e['time']:<27}  {e['type']:<22}  {str(e['actor'])[:28]:<28}  "
              f"{(e['run_id'] or '-'):<32}  {e['subject'] or ''}")


def cmd_keys_rotate(args):
    data = _data_dir(args.data)
    kid, retired, dropped = keys.rotate(data, load_config(data))
    print(f"current signing key: {kid}; retired: {', '.join(retired) or '-'}; "
          f"dropped (every token they signed has expired): {', '.join(dropped) or '-'}")


def parser():
    p = argparse.ArgumentParser(prog="bs-controlplane", description="bootstrap-saas reference control plane")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="create a data dir")
    s.add_argument("--data", required=True)
    s.add_argument("--issuer")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("serve", help="serve the HTTPS API")
    s.add_argument("--data", required=True)
    s.add_argument("--listen", default="127.0.0.1:8443")
    s.add_argument("--rate-limit", type=float, default=None, help="requests per second per client (0 = off)")
    s.add_argument("--threads", type=int, default=16)
    s.add_argument("--rotate-interval", type=int, default=None,
                   help="rotate the signing key when it is this many seconds old (default: config.json "
                        f"rotate_interval, else {keys.DEFAULT_ROTATE_INTERVAL}; 0 = never)")
    # Test-only, hidden, off by default: sleep between reading a token's row and the redeem's write, so
    # that tests can show the single-use guarantee does not rest on a read-then-write.
    s.add_argument("--test-redeem-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("profile", help="profiles")
    psub = s.add_subparsers(dest="profile_command", required=True)
    s = psub.add_parser("set", help="store a new version of a profile")
    audit_cli.add_target(s)
    s.add_argument("--actor", default="admin")
    s.add_argument("name")
    s.add_argument("file")
    s.set_defaults(func=cmd_profile_set)

    s = sub.add_parser("user-key", help="per-user credential keys")
    usub = s.add_subparsers(dest="user_key_command", required=True)
    s = usub.add_parser("new", help="write a fresh user key file (JWK set)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_user_key_new)

    s = sub.add_parser("credential", help="credential envelopes")
    csub = s.add_subparsers(dest="credential_command", required=True)
    s = csub.add_parser("put", help="encrypt a file with the user's key and store the envelope")
    s.add_argument("--data", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--key-file", required=True)
    s.add_argument("--from-file", required=True)
    s.set_defaults(func=cmd_credential_put)
    s = csub.add_parser("rotate-key", help="re-encrypt a user's credentials to a new key (on this side)")
    s.add_argument("--data", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--key-file", required=True, help="the user's current key file (any key in it may open)")
    s.add_argument("--new-key-file", help="encrypt to the first key of this file (created when missing); "
                                          "without it a new key is added at the front of --key-file")
    s.set_defaults(func=cmd_credential_rotate_key)

    s = sub.add_parser("mint", help="mint a provisioning token (printed on stdout)")
    audit_cli.add_target(s)
    s.add_argument("--profile", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--ttl", type=int)
    s.set_defaults(func=cmd_mint)

    s = sub.add_parser("enrollment-key", help="keys that only mint tokens, for one profile and user (AWX)")
    esub = s.add_subparsers(dest="enrollment_key_command", required=True)
    s = esub.add_parser("new", help="create a key (its value is printed once, on stdout)")
    s.add_argument("--data", required=True)
    s.add_argument("--profile", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--expires", type=int, metavar="SECONDS",
                   help=f"lifetime of the key (default {enrollment.DEFAULT_EXPIRES} s)")
    s.set_defaults(func=cmd_enrollment_key_new)
    s = esub.add_parser("revoke", help="revoke a key: it mints nothing from now on")
    s.add_argument("--data", required=True)
    s.add_argument("key_id", metavar="KEY_ID")
    s.set_defaults(func=cmd_enrollment_key_revoke)

    s = sub.add_parser("audit", help="the audit trail")
    asub = s.add_subparsers(dest="audit_command", required=True)
    s = asub.add_parser("list")
    audit_cli.add_target(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_list)
    audit_cli.register(sub, asub)

    s = sub.add_parser("keys", help="signing keys")
    ksub = s.add_subparsers(dest="keys_command", required=True)
    s = ksub.add_parser("rotate")
    s.add_argument("--data", required=True)
    s.set_defaults(func=cmd_keys_rotate)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (CliError, ApiError) as exc:
        print(f"bs-controlplane: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"bs-controlplane: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
