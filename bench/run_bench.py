"""make bench: one host, a fleet and the control plane alone, measured against what they compete with.

Prints a markdown table and writes the same figures as JSON under bench/results/. Every figure is
the median of several runs with min and max; the variants of one comparison run interleaved
(A, B, A, B ...) in one process so that load from elsewhere on the machine hits them alike.
Run as root: hosts are throwaway local accounts, provisioned over Ansible's local connection.
"""
import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
import conftest  # noqa: E402,F401  links the checkout as the collection, exactly as the tests do

from helpers.controlplane import ControlPlane  # noqa: E402
from helpers.e2e import HOST_PYTHON, PLAYBOOK, ThrowawayUser, ansible_env, write_secret_vars  # noqa: E402
from helpers.stack import new_ssh_private_key  # noqa: E402

CP_USER = "bench"
FLOOR = BENCH / "playbooks" / "floor.yml"
COPY_LOOP = BENCH / "playbooks" / "copy_loop.yml"
GNU_TIME = "/usr/bin/time"
SECTIONS = ("one_host", "fleet", "control_plane")
RECAP_RE = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)


class BenchError(Exception):
    pass


# --- figures ---------------------------------------------------------------------------------------

class Figures:
    def __init__(self):
        self.samples = {}  # name -> (unit, [values])
        self.targets = []
        self.checks = {}
        self.notes = {}

    def add(self, name, value, unit="s"):
        self.samples.setdefault(name, (unit, []))[1].append(value)

    def median(self, name):
        return statistics.median(self.samples[name][1])

    def has(self, name):
        return name in self.samples

    def target(self, name, value, limit, ok, shown):
        self.targets.append({"target": name, "measured": value, "required": limit, "pass": bool(ok),
                             "shown": shown})

    def as_json(self):
        figures = {}
        for name, (unit, values) in self.samples.items():
            figures[name] = {"unit": unit, "median": statistics.median(values), "min": min(values),
                             "max": max(values), "runs": len(values), "samples": values}
        return {"figures": figures, "targets": self.targets, "checks": self.checks, "notes": self.notes}


def fmt(value, unit):
    if unit == "s":
        return "%.2f" % value
    if unit in ("MiB", "ms"):
        return "%.1f" % value
    if unit in ("/s",):
        return "%.0f" % value
    return "%g" % value


def markdown(result):
    lines = ["| figure | median | min | max | runs |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, f in result["figures"].items():
        unit = f["unit"]
        lines.append("| %s (%s) | %s | %s | %s | %d |" % (name, unit, fmt(f["median"], unit), fmt(f["min"], unit),
                                                          fmt(f["max"], unit), f["runs"]))
    lines += ["", "| target | measured | required | result |", "| --- | ---: | --- | --- |"]
    for t in result["targets"]:
        lines.append("| %s | %s | %s | %s |" % (t["target"], t["shown"], t["required"],
                                                "pass" if t["pass"] else "**miss**"))
    return "\n".join(lines)


# --- profiles --------------------------------------------------------------------------------------

def file_size(rng):
    """Mostly dotfile-sized, some tool configs, a few large ones."""
    roll = rng.random()
    if roll < 0.80:
        return rng.randint(100, 2048)
    if roll < 0.98:
        return rng.randint(2048, 16384)
    return rng.randint(32768, 65536)


def text(rng, size):
    line = "".join(rng.choices(string.ascii_letters + string.digits + " =_-", k=79)) + "\n"
    return (line * (size // 80 + 1))[:size - 1] + "\n"


def profile_files(count, credentials):
    """[(path, mode, content or None, credential or None)]: count entries over the allowlisted roots."""
    rng = random.Random(count)
    entries = [("~/%s" % name, "0644", text(rng, file_size(rng)), None) for name in (".bashrc", ".zshrc")]
    entries += [("~/.ssh/bench_key_%d" % i, "0600", None, name) for i, name in enumerate(credentials)]
    index = 0
    while len(entries) < count:
        if index % 20 == 19:
            entries.append(("~/.local/bin/bench-tool-%04d" % index, "0755", "#!/bin/sh\n" + text(rng, 200), None))
        else:
            entries.append(("~/.config/bench-%02d/file-%04d.conf" % (index // 50, index), "0644",
                            text(rng, file_size(rng)), None))
        index += 1
    return entries[:count]


def credentials_for(count):
    return ["bench_key_%d" % i for i in range({10: 1, 100: 3}.get(count, 5) if count >= 10 else 1)]


# --- the bench ---------------------------------------------------------------------------------------

class Bench:
    def __init__(self, work, quick):
        self.work = Path(work)
        self.quick = quick
        self.figures = Figures()
        self.env = ansible_env(self.work)
        self.env["ANSIBLE_HOST_KEY_CHECKING"] = "0"
        self.wrapper = self._interpreter_wrapper()
        self.sizes = (10, 100) if quick else (10, 100, 1000)
        self.copy_sizes = (10,) if quick else (10, 100)
        self.fleets = (1, 5) if quick else (1, 5, 20)
        # The one-host variants are cheap and noisy, so they run more often than the slow copy loop.
        self.reps = 1 if quick else 3
        self.one_host_reps = 1 if quick else 5
        self.contents = {}

    def _interpreter_wrapper(self):
        """The host's Python under GNU time, so that every module process's peak RSS is logged."""
        path = self.work / "python-under-time"
        if not os.access(GNU_TIME, os.X_OK):
            path.write_text('#!/bin/sh\nexec %s "$@"\n' % HOST_PYTHON)
            self.figures.notes["module_memory"] = "not measured: %s is missing" % GNU_TIME
        else:
            path.write_text('#!/bin/sh\n# one line per module process: peak RSS in KiB and the command line\n'
                            'exec %s -a -o "${BENCH_RSS_LOG:-/dev/null}" -f "%%M %%C" %s "$@"\n'
                            % (GNU_TIME, HOST_PYTHON))
        path.chmod(0o755)
        return path

    # --- the control plane and its profiles -----------------------------------------------------

    def start_control_plane(self):
        self.cp = ControlPlane(self.work / "cp").init()
        self.user_key = self.work / "bench.key"
        self.cp.new_user_key(self.user_key)
        self.secrets = {}
        for name in credentials_for(1000):
            self.secrets[name] = new_ssh_private_key().decode()
            plain = self.work / "plain"
            plain.write_text(self.secrets[name])
            self.cp.put_credential(CP_USER, name, self.user_key, self.secrets[name].encode())
            plain.unlink()
        for count in self.sizes:
            entries = profile_files(count, credentials_for(count))
            self.contents[count] = entries
            files = [dict({"path": p, "mode": m}, **({"credential": c} if c else {"content": t}))
                     for p, m, t, c in entries]
            self.cp.set_profile("bench%d" % count, {"files": files})
        # Rate limiting is per client address and every host here is 127.0.0.1: off for the bench.
        self.cp.start("--rate-limit", "0")

    # --- running ansible-playbook ------------------------------------------------------------------

    def playbook(self, playbook, hosts, extra=None, forks=1, label=""):
        """Run ansible-playbook over {host: hostvars}; returns (seconds, recap, module RSS lines)."""
        tag = "%s-%s" % (label, os.urandom(3).hex())
        inventory = self.work / ("inventory-%s.json" % tag)
        host_vars = {}
        for name, values in hosts.items():
            host_vars[name] = dict(values, ansible_connection="local", ansible_python_interpreter=str(self.wrapper))
        write_secret_vars(inventory, {"all": {"hosts": host_vars}})
        varfile = write_secret_vars(self.work / ("vars-%s.json" % tag), extra or {})
        rss_log = self.work / ("rss-%s.log" % tag)
        env = dict(self.env, BENCH_RSS_LOG=str(rss_log))
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-f", str(forks),
               "-e", "@%s" % varfile, str(playbook)]
        try:
            began = time.monotonic()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=str(self.work))
            seconds = time.monotonic() - began
        finally:
            inventory.unlink()
            varfile.unlink()
        if done.returncode != 0:
            raise BenchError("%s failed (%d):\n%s\n%s" % (label, done.returncode, done.stdout[-4000:],
                                                          done.stderr[-2000:]))
        recap = {h: dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", counters))
                 for h, counters in RECAP_RE.findall(done.stdout)}
        if set(recap) != set(hosts):
            raise BenchError("%s: no recap for every host:\n%s" % (label, done.stdout[-3000:]))
        rss = rss_log.read_text().splitlines() if rss_log.exists() else []
        if rss_log.exists():
            rss_log.unlink()
        return seconds, recap, rss

    def role_vars(self):
        return {"bootstrap_agent_url": self.cp.url, "bootstrap_agent_ca_path": str(self.cp.ca_path),
                "bootstrap_agent_user_key": self.user_key.read_text()}

    def host(self, user, token):
        return {"bootstrap_agent_user": user.name, "bootstrap_agent_token": token}

    def mint(self, profile):
        token = self.cp.mint(profile, CP_USER)
        self.minted.setdefault(profile, []).append(token)
        return token

    @staticmethod
    def module_rss_mib(rss, module):
        values = [int(line.split()[0]) for line in rss if "AnsiballZ_%s.py" % module in line]
        return max(values) / 1024 if values else None

    # --- 1. one host --------------------------------------------------------------------------------

    def one_host(self):
        f = self.figures
        self.minted = {}
        self.reruns = {}
        for rep in range(self.one_host_reps):
            for count in self.sizes:
                profile = "bench%d" % count
                # the floor next to every size, so that each ratio has its floor from the same minute
                seconds, _, _ = self.playbook(FLOOR, {"host01": {}}, label="floor")
                f.add("one host: floor, 4 no-op tasks", seconds)
                f.add("one host: floor next to %d files" % count, seconds)
                with ThrowawayUser("bs-bench") as user:
                    token = self.mint(profile)
                    seconds, recap, rss = self.playbook(PLAYBOOK, {"host01": self.host(user, token)},
                                                        self.role_vars(), label="role%d" % count)
                    f.add("one host: role, %d files" % count, seconds)
                    mib = self.module_rss_mib(rss, "home_files")
                    if mib is not None:
                        f.add("one host: home_files peak RSS, %d files" % count, mib, "MiB")
                    # the same token again: token_redeem sees the finished run and home_files is skipped
                    seconds, recap, _ = self.playbook(PLAYBOOK, {"host01": self.host(user, token)},
                                                      self.role_vars(), label="same%d" % count)
                    f.add("one host: rerun with the same token, %d files" % count, seconds)
                    f.checks.setdefault("same-token rerun skipped home_files", []).append(
                        recap["host01"].get("skipped", 0) >= 1)
                    # nothing to change, as a user meets it: a new token for the same host and profile
                    again = self.mint(profile)
                    seconds, recap, _ = self.playbook(PLAYBOOK, {"host01": self.host(user, again)},
                                                      self.role_vars(), label="rerun%d" % count)
                    f.add("one host: rerun with a new token, %d files" % count, seconds)
                    self.reruns.setdefault(count, []).append((again, recap["host01"]))
                if count in self.copy_sizes and rep < self.reps:
                    with ThrowawayUser("bs-bench") as user:
                        files = self.prepare_copy(user, count)
                        seconds, _, _ = self.playbook(
                            COPY_LOOP, {"host01": {"bench_home": str(user.home), "bench_owner": user.name}},
                            {"bench_files": files}, label="copy%d" % count)
                        f.add("one host: copy loop, %d files" % count, seconds)
                        written = sum(1 for e in self.contents[count] if (user.home / e[0][2:]).is_file())
                        f.checks.setdefault("copy loop wrote every file", []).append(written == count)

    def prepare_copy(self, user, count):
        files = []
        for path, mode, content, credential in self.contents[count]:
            rel = path[2:]
            parent = user.home / rel
            for d in reversed([p for p in parent.parents if user.home in p.parents]):
                if not d.exists():
                    d.mkdir(mode=0o700 if d.name == ".ssh" else 0o755)
                    os.chown(d, user.pw.pw_uid, user.pw.pw_gid)
            files.append({"path": rel, "mode": mode, "content": self.secrets[credential] if credential else content})
        return files

    def check_reruns(self):
        """The audit trail says what a new-token rerun did: every entry file.unchanged, none written."""
        events = self.cp.audit()
        run_of = {e["data"].get("fingerprint"): e["run_id"] for e in events if e["type"] == "run.started"}
        per_run = {}
        for e in events:
            if e["type"] in ("file.written", "file.unchanged"):
                per_run.setdefault(e["run_id"], {}).setdefault(e["type"], 0)
                per_run[e["run_id"]][e["type"]] += 1
        for count, runs in self.reruns.items():
            ok = []
            for token, _ in runs:
                kinds = per_run.get(run_of.get(hashlib.sha256(token.encode()).hexdigest()), {})
                ok.append(kinds.get("file.unchanged") == count and not kinds.get("file.written"))
            self.figures.checks["rerun %d files: every entry file.unchanged" % count] = ok
        return events

    # --- 2. a fleet -----------------------------------------------------------------------------------

    def fleet(self):
        f = self.figures
        for rep in range(self.reps):
            for n in self.fleets:
                order = ("floor", "role") if rep % 2 == 0 else ("role", "floor")
                for variant in order:
                    with contextlib.ExitStack() as stack:
                        users = [stack.enter_context(ThrowawayUser("bs-fleet")) for _ in range(n)]
                        if variant == "floor":
                            hosts = {"host%02d" % i: self.host(u, "") for i, u in enumerate(users, 1)}
                            seconds, _, _ = self.playbook(FLOOR, hosts, forks=n, label="fleet-floor%d" % n)
                        else:
                            hosts = {"host%02d" % i: self.host(u, self.mint("bench10"))
                                     for i, u in enumerate(users, 1)}
                            seconds, recap, _ = self.playbook(PLAYBOOK, hosts, self.role_vars(), forks=n,
                                                              label="fleet-role%d" % n)
                            f.checks.setdefault("fleet: every host changed, none failed", []).append(
                                all(r.get("failed") == 0 and r.get("changed", 0) >= 1 for r in recap.values()))
                        f.add("fleet of %d: %s, total" % (n, variant), seconds)
                        f.add("fleet of %d: %s, per host" % (n, variant), seconds / n)

    # --- 3. the control plane alone -----------------------------------------------------------------

    def control_plane(self):
        f = self.figures
        tokens = 500 if self.quick else 5000
        clients = 10 if self.quick else 50
        threads = 16
        f.notes["control plane"] = ("bs-controlplane serve --rate-limit 0 --threads %d; %d clients, %d tokens "
                                    "plus %d duplicate redeems from other machines" % (threads, clients, tokens,
                                                                                       tokens // 10))
        for rep in range(1 if self.quick else 2):
            cp = ControlPlane(self.work / ("cp-load-%d" % rep)).init()
            cp.set_profile("small", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "export A=1\n"}]})
            cp.start("--rate-limit", "0", "--threads", str(threads))
            try:
                job = {"url": cp.url, "ca_path": str(cp.ca_path), "admin_key": cp.admin_key, "profile": "small",
                       "user": CP_USER, "tokens": tokens, "duplicates": tokens // 10, "clients": clients,
                       "audit_runs": 4, "audit_batches": 8 if self.quick else 40, "audit_batch_size": 500}
                done = subprocess.run([sys.executable, str(BENCH / "loadgen.py")], input=json.dumps(job),
                                      capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    raise BenchError("the load generator failed:\n%s" % done.stderr[-3000:])
                load = json.loads(done.stdout)
                with open("/proc/%d/status" % cp.process.pid) as status:
                    hwm = int(re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.M).group(1))
                events = cp.audit()
            finally:
                cp.stop()
            r = load["redeem"]
            f.add("control plane: redeem throughput", r["per_second"], "/s")
            f.add("control plane: redeem p50", r["p50_ms"], "ms")
            f.add("control plane: redeem p99", r["p99_ms"], "ms")
            f.add("control plane: connection set-up before the clock, slowest of %d" % clients,
                  r["connect_max_ms"], "ms")
            f.add("control plane: token mint throughput", load["mint"]["tokens"] / load["mint"]["seconds"], "/s")
            f.add("control plane: audit ingest", load["ingest"]["per_second"], "/s")
            f.add("control plane: server peak RSS (VmHWM)", hwm / 1024, "MiB")
            started = {}
            for e in events:
                if e["type"] == "run.started":
                    started[e["data"]["fingerprint"]] = started.get(e["data"]["fingerprint"], 0) + 1
            server_once = all(started.get(fp) == 1 for fp in r["fingerprints"])
            once = (r["tokens_won_once"] == r["tokens"] and not r["tokens_won_twice_or_more"]
                    and server_once and r["statuses"].get("409 already_redeemed") == tokens // 10)
            f.checks.setdefault("control plane: exactly once (client answers and run.started events)", []).append(
                once)
            f.notes.setdefault("control plane: redeem answers", []).append(r["statuses"])
            f.notes.setdefault("control plane: reconnects", []).append(r["reconnects"])

    def timed(self, section):
        t = time.monotonic()
        print("bench: %s ..." % section, file=sys.stderr, flush=True)
        getattr(self, section)()
        self.figures.notes["seconds: " + section] = round(time.monotonic() - t, 1)

    # --- targets -----------------------------------------------------------------------------------------

    def targets(self):
        f = self.figures
        m = f.median

        def ratio(name, a, b, limit, below=True):
            value = m(a) / m(b)
            f.target(name, round(value, 2), ("<= %.1fx" if below else ">= %.0fx") % limit,
                     value <= limit if below else value >= limit, "%.2fx" % value)

        if f.has("one host: role, 100 files"):
            ratio("100 files: role / floor", "one host: role, 100 files", "one host: floor next to 100 files", 1.3)
        if f.has("one host: copy loop, 100 files"):
            ratio("100 files: copy loop / role", "one host: copy loop, 100 files", "one host: role, 100 files",
                  20, below=False)
        if f.has("one host: role, 1000 files"):
            ratio("1000 files: role / floor", "one host: role, 1000 files", "one host: floor next to 1000 files", 2)
        for count in self.sizes:
            if not f.has("one host: rerun with a new token, %d files" % count):
                continue
            unchanged = all(f.checks.get("rerun %d files: every entry file.unchanged" % count, [False]))
            value = m("one host: rerun with a new token, %d files" % count) / m("one host: role, %d files" % count)
            f.target("rerun (new token) %d files: no change, rerun / first run" % count, round(value, 2),
                     "no change and <= 1.0x", unchanged and value <= 1.0,
                     "%s, %.2fx" % ("no change" if unchanged else "CHANGED", value))
        big = max(self.fleets)
        if f.has("fleet of %d: role, total" % big):
            ratio("fleet of %d: role / floor" % big, "fleet of %d: role, total" % big,
                  "fleet of %d: floor, total" % big, 1.3)
        if f.has("control plane: redeem throughput"):
            rps, p99 = m("control plane: redeem throughput"), m("control plane: redeem p99")
            once = all(f.checks["control plane: exactly once (client answers and run.started events)"])
            f.target("control plane: redeems/s, p99, exactly once", round(rps),
                     ">= 250/s, p99 < 200 ms, exactly once", rps >= 250 and p99 < 200 and once,
                     "%.0f/s, p99 %.0f ms, %s" % (rps, p99, "exactly once" if once else "NOT exactly once"))
            ingest = m("control plane: audit ingest")
            f.target("control plane: audit ingest", round(ingest), ">= 5000 events/s", ingest >= 5000,
                     "%.0f/s" % ingest)
        for name, values in f.checks.items():
            if not all(values):
                f.target("check: " + name, False, "holds", False, "%d of %d" % (sum(values), len(values)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, smaller sizes: a smoke run")
    parser.add_argument("--results", default=str(BENCH / "results"))
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="measure this part only (repeatable); its targets are printed, the others not")
    args = parser.parse_args()
    sections = args.only or SECTIONS
    if os.geteuid() != 0:
        sys.exit("make bench runs as root: its hosts are throwaway local accounts")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    work = tempfile.mkdtemp(prefix="bs-bench-")
    bench = Bench(work, args.quick)
    began = time.monotonic()
    try:
        ansible_parts = [s for s in ("one_host", "fleet") if s in sections]
        if ansible_parts:
            bench.start_control_plane()
            try:
                for name in ansible_parts:
                    bench.timed(name)
                if "one_host" in ansible_parts:
                    bench.check_reruns()
            finally:
                bench.cp.stop()
        if "control_plane" in sections:
            bench.timed("control_plane")
        bench.targets()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = bench.figures.as_json()
    result.update({
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "quick": args.quick, "seconds": round(time.monotonic() - began),
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "python": platform.python_version(), "ansible_core": ansible_version()},
    })
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("bench-%s%s.json" % (started.strftime("%Y%m%dT%H%M%SZ"), "-quick" if args.quick else ""))
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("## make bench, %s%s (%d s, load average %.1f before, %.1f after)\n"
          % (result["date"], ", quick" if args.quick else "", result["seconds"], load_before[0],
             result["machine"]["load_average_after"][0]))
    print(markdown(result))
    print("\nJSON: %s" % path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    # A missed time target is a finding, printed above; a broken guarantee fails the bench.
    return 0 if all(all(v) for v in result["checks"].values()) else 1


def ansible_version():
    from ansible.release import __version__
    return __version__


if __name__ == "__main__":
    sys.exit(main())
