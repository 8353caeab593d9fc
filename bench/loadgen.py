"""Load generator for the control-plane bench, run in a process of its own.

Reads a JSON job on stdin ({url, ca_path, admin_key, profile, user, tokens, duplicates, clients,
audit_runs, audit_batches, audit_batch_size}) and prints one JSON document of measurements.
Every client is a thread with one keep-alive HTTPS connection (http.client and ssl, stdlib only).
"""
import hashlib
import http.client
import json
import queue
import random
import secrets
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit


class Client:
    """One keep-alive HTTPS connection; reconnects only when the server closed it."""

    def __init__(self, url, context):
        parts = urlsplit(url)
        self.host, self.port, self.context = parts.hostname, parts.port, context
        self.conn = None
        self.reconnects = -1

    def connect(self):
        """Open the connection (TCP and TLS handshake) now; returns the seconds it took."""
        began = time.monotonic()
        self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
        self.conn.connect()
        self.reconnects += 1
        return time.monotonic() - began

    def request(self, method, path, body, bearer=None):
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
        if bearer:
            headers["Authorization"] = "Bearer " + bearer
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
                self.reconnects += 1
            try:
                self.conn.request(method, path, payload, headers)
                answer = self.conn.getresponse()
                data = answer.read()
                if answer.getheader("Connection", "").lower() == "close":
                    self.close()
                return answer.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server dropped between requests: retry once on a fresh one.
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_clients(job, context, work, handle):
    """Run handle(client, item) over the items of work on job['clients'] threads, each on a connection opened
    beforehand; returns (seconds, results, reconnects, seconds of each first connect)."""
    items = queue.Queue()
    for item in work:
        items.put(item)
    results, lock, errors = [], threading.Lock(), []
    clients = [Client(job["url"], context) for _ in range(job["clients"])]
    start = threading.Barrier(len(clients) + 1)

    connects = []

    def worker(client):
        # Keep-alive clients are connected before the clock starts: a handshake is not a request.
        connects.append(client.connect())
        start.wait()
        local = []
        try:
            while True:
                try:
                    item = items.get_nowait()
                except queue.Empty:
                    break
                local.append(handle(client, item))
        except Exception as e:  # reported, never swallowed: the bench fails on it
            errors.append(repr(e))
        finally:
            client.close()
            with lock:
                results.extend(local)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    if errors:
        raise RuntimeError("client errors: %s" % "; ".join(errors[:5]))
    return elapsed, results, sum(max(c.reconnects, 0) for c in clients), connects


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    job = json.load(sys.stdin)
    context = ssl.create_default_context(cafile=job["ca_path"])

    def mint(client, _):
        status, data = client.request("POST", "/v1/tokens", {"profile": job["profile"], "user": job["user"]},
                                      bearer=job["admin_key"])
        if status != 201:
            raise RuntimeError("mint answered %d" % status)
        return json.loads(data)["token"]

    mint_seconds, tokens, _, _ = run_clients(job, context, range(job["tokens"] + job["audit_runs"]), mint)
    audit_tokens, tokens = tokens[:job["audit_runs"]], tokens[job["audit_runs"]:]

    # Each token once from its own machine, plus duplicate attempts from other machines, shuffled in.
    attempts = [(t, "machine-%d" % i) for i, t in enumerate(tokens)]
    attempts += [(random.choice(tokens), "intruder-%d" % i) for i in range(job["duplicates"])]
    random.shuffle(attempts)

    def redeem(client, attempt):
        token, machine = attempt
        body = {"token": token, "machine": {"id": machine, "hostname": machine, "user": "bench"},
                "machine_secret_hash": hashlib.sha256(machine.encode()).hexdigest()}
        began = time.monotonic()
        status, data = client.request("POST", "/v1/tokens/redeem", body)
        latency = time.monotonic() - began
        code = json.loads(data).get("error", {}).get("code") if status != 200 else None
        return hashlib.sha256(token.encode()).hexdigest(), status, code, latency

    redeem_seconds, redeemed, reconnects, connects = run_clients(job, context, attempts, redeem)
    wins = dict((hashlib.sha256(t.encode()).hexdigest(), 0) for t in tokens)
    for fp, status, _, _ in redeemed:
        wins[fp] = wins.get(fp, 0) + (status == 200)
    statuses = {}
    for _, status, code, _ in redeemed:
        key = "%d %s" % (status, code or "ok")
        statuses[key] = statuses.get(key, 0) + 1
    latencies = [r[3] for r in redeemed]

    # Audit ingest: one run per client thread, batches of distinct events with that run's token.
    runs = []
    for i, token in enumerate(audit_tokens):
        machine = "ingest-%d" % i
        status, data = Client(job["url"], context).request(
            "POST", "/v1/tokens/redeem", {"token": token, "machine": {"id": machine, "hostname": machine},
                                          "machine_secret_hash": hashlib.sha256(machine.encode()).hexdigest()})
        if status != 200:
            raise RuntimeError("redeem for the ingest run answered %d" % status)
        answer = json.loads(data)
        runs.append((answer["run_id"], answer["run_token"]))
    batches = [(runs[b % len(runs)], b) for b in range(job["audit_batches"])]

    def ingest(client, batch):
        (run_id, run_token), number = batch
        events = [{"id": secrets.token_hex(16), "type": "file.written", "run_id": run_id, "task": "home_files",
                   "subject": "~/.config/bench/%d/%d" % (number, i),
                   "data": {"mode": "0644", "owner": "bench", "sha256": hashlib.sha256(b"%d" % i).hexdigest()}}
                  for i in range(job["audit_batch_size"])]
        began = time.monotonic()
        status, data = client.request("POST", "/v1/audit/events", {"events": events}, bearer=run_token)
        if status != 200 or len(json.loads(data)["events"]) != len(events):
            raise RuntimeError("audit batch answered %d" % status)
        return time.monotonic() - began

    ingest_job = dict(job, clients=min(job["clients"], len(runs)))
    ingest_seconds, ingested, _, _ = run_clients(ingest_job, context, batches, ingest)

    json.dump({
        "mint": {"tokens": len(tokens) + len(audit_tokens), "seconds": mint_seconds},
        "redeem": {
            "requests": len(redeemed), "seconds": redeem_seconds,
            "per_second": len(redeemed) / redeem_seconds,
            "p50_ms": 1000 * percentile(latencies, 0.50), "p99_ms": 1000 * percentile(latencies, 0.99),
            "max_ms": 1000 * max(latencies), "statuses": statuses, "reconnects": reconnects,
            "connect_p50_ms": 1000 * percentile(connects, 0.50), "connect_max_ms": 1000 * max(connects),
            "tokens": len(tokens), "tokens_won_once": sum(1 for n in wins.values() if n == 1),
            "tokens_won_twice_or_more": sum(1 for n in wins.values() if n > 1),
            "tokens_never_won": sum(1 for n in wins.values() if n == 0),
            "fingerprints": sorted(wins),
        },
        "ingest": {"events": len(ingested) * job["audit_batch_size"], "seconds": ingest_seconds,
                   "per_second": len(ingested) * job["audit_batch_size"] / ingest_seconds,
                   "clients": ingest_job["clients"], "batch_size": job["audit_batch_size"],
                   "batch_p50_ms": 1000 * percentile(ingested, 0.5)},
    }, sys.stdout)


if __name__ == "__main__":
    main()
