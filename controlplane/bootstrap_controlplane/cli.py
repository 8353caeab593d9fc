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

from . import audit, envelope, keys, profiles, store, tokens
from .errors import ApiError
from .util import CONFIG_NAME, DEFAULT_CONFIG, atomic_write, load_config, now_iso, write_new_file


class CliError(Exception):
    pass


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
    app = ControlPlaneApp(data, rate_limit=args.rate_limit)
    server = wsgi.Server((host, int(port)), app, numthreads=args.threads, server_name="bootstrap-saas")
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
    conn = store.connect(_data_dir(args.data))
    result = profiles.set_profile(conn, args.name, _load_manifest(args.file), args.actor)
    print(f"profile {result['name']} version {result['version']}")


def cmd_user_key_new(args):
    try:
        envelope.write_user_key(args.out)
    except FileExistsError:
        raise CliError(f"{args.out} exists already; refusing to overwrite a key")
    print(f"wrote a new user key to {args.out}")


def cmd_credential_put(args):
    conn = store.connect(_data_dir(args.data))
    tokens.check_name("user", args.user)
    tokens.check_name("credential", args.name)
    try:
        kid, key = envelope.parse_user_keys(Path(args.key_file).read_text())[0]
    except envelope.KeyFileError as exc:
        raise CliError(str(exc))
    plaintext = Path(args.from_file).read_bytes()
    with store.Transaction(conn):
        previous = store.latest_credential(conn, args.user, args.name)
        version = previous["version"] + 1 if previous else 1
        compact = envelope.encrypt(kid, key, args.name, args.user, version, plaintext)
        store.insert_credential(conn, args.user, args.name, version, kid, compact, now_iso())
    print(f"credential {args.name} of {args.user}: version {version} (key {kid})")


def cmd_mint(args):
    data = _data_dir(args.data)
    config = load_config(data)
    conn = store.connect(data)
    answer = tokens.mint_provisioning(conn, keys.KeyRing(data, config), config, args.profile, args.user,
                                      args.ttl, "cli")
    print(answer["token"])


def cmd_audit_list(args):
    events = audit.list_events(store.connect(_data_dir(args.data)))
    if args.json:
        print(json.dumps(events, indent=1))
        return
    print(f"{'seq':>6}  {'time':<27}  {'type':<22}  {'actor':<28}  {'run_id':<32}  subject")
    for e in events:
        print(f"{e['seq']:>6}  {e['time']:<27}  {e['type']:<22}  {str(e['actor'])[:28]:<28}  "
              f"{(e['run_id'] or '-'):<32}  {e['subject'] or ''}")


def cmd_audit_verify(args):
    count, broken = audit.verify(store.connect(_data_dir(args.data)))
    if broken:
        print(f"audit chain BROKEN at seq {broken[0]}: {broken[1]} ({count} events before it are intact)")
        return 1
    print(f"audit chain OK: {count} events")
    return 0


def cmd_keys_rotate(args):
    data = _data_dir(args.data)
    kid, retired = keys.rotate(data)
    print(f"current signing key: {kid}; retired: {', '.join(retired) or '-'}")


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
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("profile", help="profiles")
    psub = s.add_subparsers(dest="profile_command", required=True)
    s = psub.add_parser("set", help="store a new version of a profile")
    s.add_argument("--data", required=True)
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

    s = sub.add_parser("mint", help="mint a provisioning token (printed on stdout)")
    s.add_argument("--data", required=True)
    s.add_argument("--profile", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--ttl", type=int)
    s.set_defaults(func=cmd_mint)

    s = sub.add_parser("audit", help="the audit trail")
    asub = s.add_subparsers(dest="audit_command", required=True)
    s = asub.add_parser("list")
    s.add_argument("--data", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_list)
    s = asub.add_parser("verify")
    s.add_argument("--data", required=True)
    s.set_defaults(func=cmd_audit_verify)

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
