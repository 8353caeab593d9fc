"""The hostile corpus: profile entries and pre-planted home layouts, each with the expected outcome.

Every case has the hostile part and, where it makes sense, a harmless ``~/.zshrc`` entry, so that
"one refused entry writes nothing at all" is shown each time. Traps are created per case, outside
the home: ``trap`` below /tmp (an /etc-like tree, a directory anyone may write to) and ``rtrap``
below /root (a /root/.ssh-like tree).
"""
import os
import socket
from pathlib import Path

from paths_support import CANARY, chown_user

GOOD = {"path": "~/.zshrc", "mode": "0644", "content": "# %s\nexport EDITOR=vi\n" % CANARY}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%s corpus@example.com\n" % CANARY


def text(label):
    return "# %s %s\n" % (CANARY, label)


class Case:
    def __init__(self, cid, files, layout=None, refused=(), says=(), failed=None, written=None, kept=(),
                 gone=(), user=None, allowed=None):
        self.id = cid
        self.files = files
        self.layout = layout
        self.refused = list(refused)       # (path as shown, rule) of every refused entry
        self.says = list(says)             # further text the failure message must contain
        self.failed = failed               # text of a failure that is not an entry refusal
        self.written = written or {}       # {home-relative path: bytes} expected afterwards
        self.kept = list(kept)             # home-relative paths that must be exactly as planted
        self.gone = list(gone)             # home-relative paths that must no longer exist
        self.user = user                   # another account than the case's own
        self.allowed = allowed             # the task's narrowing of the allowlist


class Layout:
    """Plants things in a home (as the user would, owned by the user unless said) and in the traps."""

    def __init__(self, home, pw, trap, rtrap):
        self.home, self.pw, self.trap, self.rtrap = Path(home), pw, Path(trap), Path(rtrap)

    def _parents(self, rel):
        d = self.home
        for part in Path(rel).parts[:-1]:
            d = d / part
            if not os.path.lexists(d):
                d.mkdir(mode=0o700)
                chown_user(d, self.pw)

    def link(self, rel, target):
        self._parents(rel)
        os.symlink(str(target), str(self.home / rel))
        chown_user(self.home / rel, self.pw)

    def dir(self, rel, mode=0o700, root=False):
        self._parents(rel)
        if not (self.home / rel).is_dir():
            (self.home / rel).mkdir(mode=mode)
        os.chmod(self.home / rel, mode)
        if not root:
            chown_user(self.home / rel, self.pw)

    def file(self, rel, data=b"planted\n", mode=0o644, root=False):
        self._parents(rel)
        p = self.home / rel
        p.write_bytes(data)
        os.chmod(p, mode)
        if not root:
            chown_user(p, self.pw)

    def hardlink(self, rel, target):
        self._parents(rel)
        os.link(str(target), str(self.home / rel))


def make_traps(trap, rtrap):
    """An /etc-like tree, a directory anyone may write to, and a /root/.ssh-like tree: all root's."""
    for d, mode in ((trap, 0o755), (trap / "etc", 0o755), (trap / "etc" / "cron.d", 0o755),
                    (trap / "usr-local-bin", 0o755), (rtrap, 0o700), (rtrap / ".ssh", 0o700)):
        d.mkdir(mode=mode)
        os.chmod(d, mode)
    (trap / "open").mkdir()
    os.chmod(trap / "open", 0o777)
    for p, data, mode in ((trap / "etc" / "passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
                          (trap / "etc" / "shadow", b"root:*:19000:0:99999:7:::\n", 0o600),
                          (trap / "etc" / "bashrc", b"# system bashrc\n", 0o644),
                          (rtrap / ".ssh" / "authorized_keys", b"ssh-ed25519 AAAAroot root@trap\n", 0o600)):
        p.write_bytes(data)
        os.chmod(p, mode)


def with_good(*entries):
    return list(entries) + [GOOD]


def path_cases():
    """Paths refused by the grammar and the allowlist, before anything is looked at on disk."""
    refused = [
        ("/etc/passwd", "absolute-path"), ("/etc/cron.d/x", "absolute-path"), ("/usr/local/bin/x", "absolute-path"),
        ("/opt/x", "absolute-path"), ("/root/.ssh/authorized_keys", "absolute-path"), ("//etc/shadow", "absolute-path"),
        ("~root/.ssh/authorized_keys", "not-home-relative"), ("~nobody/.bashrc", "not-home-relative"),
        ("$HOME/.bashrc", "not-home-relative"), ("${HOME}/.ssh/config", "not-home-relative"),
        (".ssh/authorized_keys", "not-home-relative"), ("~", "not-home-relative"), ("", "not-home-relative"),
        ("~/../root/.ssh/authorized_keys", "parent-component"), ("~/.config/../../etc/passwd", "parent-component"),
        ("~/.ssh/..", "parent-component"), ("~/.local/bin/../../../etc/cron.d/x", "parent-component"),
        ("~/.config-evil/x", "not-allowlisted"), ("~/.ssh2/k", "not-allowlisted"), ("~/.local/binx", "not-allowlisted"),
        ("~/.local/binx/y", "not-allowlisted"), ("~/.zshrc.bak", "not-allowlisted"), ("~/.bashrc/x", "not-allowlisted"),
        ("~/.bashrc.d/x", "not-allowlisted"), ("~/.profile", "not-allowlisted"), ("~/.ssh", "not-allowlisted"),
        ("~/.config", "not-allowlisted"), ("~/.local/bin", "not-allowlisted"), ("~/.local/share/x", "not-allowlisted"),
        ("~/.SSH/authorized_keys", "not-allowlisted"), ("~/.Config/autostart/x", "not-allowlisted"),
        ("~/.ZSHRC", "not-allowlisted"), ("~/.Local/Bin/x", "not-allowlisted"),
        ("~/.config/bootstrap-saas/run.json", "reserved-agent-state"),
        ("~/.config/bootstrap-saas/machine-secret", "reserved-agent-state"),
        ("~/.config/Bootstrap-SaaS/x", "reserved-agent-state"),
        ("~/.config/BOOTSTRAP-SAAS/profile.json", "reserved-agent-state"),
        ("~/.config/bootstrap-saas", "reserved-agent-state"),
        ("~/.config//x", "non-canonical"), ("~/./.ssh/config", "non-canonical"), ("~/.ssh/", "non-canonical"),
        ("~/.ssh/./authorized_keys", "non-canonical"), ("~/.ssh/ config", "non-canonical"),
        ("~/.ssh/config ", "non-canonical"),
        ("~/.ssh/x\x00y", "control-character"), ("~/.bashrc\n", "control-character"),
        ("~/.ssh/\x1b[31mred", "control-character"), ("~/.config/x\x7f", "control-character"),
        ("~/.\u0455sh/config", "non-ascii"), ("~/.ssh\uff0fconfig", "non-ascii"), ("~/.zshrc\u200b", "non-ascii"),
        ("~/.config/cafe\u0301", "non-ascii"), ("~/.config/caf\u00e9", "non-ascii"), ("~/.ssh\u2215x", "non-ascii"),
        ("~/.config/" + "a" * 256, "too-long"), ("~/.config/" + "a/" * 2100 + "x", "too-long"),
    ]
    cases = []
    for i, (path, rule) in enumerate(refused):
        entry = {"path": path, "mode": "0644", "content": text("path %d" % i)}
        cases.append(Case("path-%02d-%s" % (i, rule), with_good(entry), refused=[(shown(path), rule)]))
    cases.append(Case("path-not-a-string", with_good({"path": 1, "mode": "0644", "content": text("int")}),
                      refused=[("1", "not-a-string")]))
    cases.append(Case("path-missing", with_good({"mode": "0644", "content": text("none")}),
                      refused=[("None", "not-a-string")]))
    return cases


def shown(path):
    """How a refusal names a path: printable ASCII as is, anything else escaped, long ones cut."""
    text_ = path if all(" " <= c <= "~" for c in path) else ascii(path)[1:-1]
    return text_ if len(text_) <= 160 else text_[:160] + "..."


def schema_cases():
    """Modes and the strict, data-only schema."""
    c = text("schema")
    bad = [
        ("mode-yaml-integer", {"path": "~/.ssh/config", "mode": 0o600, "content": c}, "~/.ssh/config", "mode",
         "did you mean '0600'"),
        ("mode-setuid", {"path": "~/.local/bin/tool", "mode": "4755", "content": c}, "~/.local/bin/tool", "mode",
         "setuid"),
        ("mode-setgid", {"path": "~/.local/bin/tool", "mode": "2755", "content": c}, "~/.local/bin/tool", "mode",
         "setgid"),
        ("mode-sticky", {"path": "~/.config/x", "mode": "1644", "content": c}, "~/.config/x", "mode", "sticky"),
        ("mode-world-writable", {"path": "~/.config/x", "mode": "0666", "content": c}, "~/.config/x", "mode",
         "writable"),
        ("mode-group-writable", {"path": "~/.bashrc", "mode": "0664", "content": c}, "~/.bashrc", "mode", "writable"),
        ("mode-exec-outside-bin", {"path": "~/.zshrc", "mode": "0755", "content": c}, "~/.zshrc", "mode",
         "only below ~/.local/bin/"),
        ("mode-private-key-readable", {"path": "~/.ssh/id_ed25519", "mode": "0644", "credential": "ssh_key"},
         "~/.ssh/id_ed25519", "mode", "private material"),
        ("mode-unreadable", {"path": "~/.config/x", "mode": "0200", "content": c}, "~/.config/x", "mode", "read"),
        ("mode-not-octal", {"path": "~/.config/x", "mode": "rw-r--r--", "content": c}, "~/.config/x", "mode",
         "octal"),
        ("key-notify-handler", {"path": "~/.config/x", "mode": "0644", "content": c, "notify": "restart"},
         "~/.config/x", "unknown-key", "notify"),
        ("key-command", {"path": "~/.config/x", "mode": "0644", "content": c, "command": "id"}, "~/.config/x",
         "unknown-key", "command"),
        ("key-template", {"path": "~/.config/x", "mode": "0644", "content_base64": "eA==", "template": True},
         "~/.config/x", "unknown-key", "template"),
        ("key-hook", {"path": "~/.config/x", "mode": "0644", "content_base64": "eA==", "post_hook": "sh -c id"},
         "~/.config/x", "unknown-key", "post_hook"),
        ("key-owner", {"path": "~/.config/x", "mode": "0644", "content_base64": "eA==", "owner": "root"},
         "~/.config/x", "unknown-key", "owner"),
        ("state-unknown", {"path": "~/.config/x", "mode": "0644", "content": c, "state": "latest"}, "~/.config/x",
         "schema", "state"),
        ("manage-unknown", {"path": "~/.config/x", "mode": "0644", "content": c, "manage": "exec"}, "~/.config/x",
         "schema", "manage"),
        ("manage-merge-elsewhere", {"path": "~/.bashrc", "mode": "0644", "content": c, "manage": "merge"},
         "~/.bashrc", "manage", "only for ~/.ssh/authorized_keys"),
        ("manage-block-credential", {"path": "~/.ssh/config", "mode": "0600", "credential": "ssh_key",
                                     "manage": "block"}, "~/.ssh/config", "manage", "whole file"),
        ("backup-not-bool", {"path": "~/.config/x", "mode": "0644", "content": c, "backup": "yes"}, "~/.config/x",
         "schema", "backup"),
        ("block-marker-in-content", {"path": "~/.bashrc", "mode": "0644", "manage": "block",
                                     "content": "# END bootstrap-saas managed block\ncurl x | sh\n"},
         "~/.bashrc", "block-marker", "marker"),
        ("absent-with-content", {"path": "~/.config/x", "state": "absent", "content_base64": "eA=="},
         "~/.config/x", "content-source", "absent"),
        ("two-content-sources", {"path": "~/.config/x", "mode": "0644", "content_base64": "eA==",
                                 "credential": "ssh_key"}, "~/.config/x", "content-source", "exactly one"),
        ("content-not-base64", {"path": "~/.config/x", "mode": "0644", "content_base64": "%%%"}, "~/.config/x",
         "content-base64", "base64"),
    ]
    cases = [Case("schema-" + cid, with_good(entry), refused=[(path, rule)], says=[says])
             for cid, entry, path, rule, says in bad]
    cases.append(Case("schema-duplicate-path", with_good({"path": "~/.zshrc", "mode": "0644", "content": c}),
                      refused=[("~/.zshrc", "duplicate-path")]))
    cases.append(Case("schema-entry-not-a-mapping", with_good("~/.ssh/authorized_keys"),
                      refused=[("entry 1", "not-a-mapping")]))
    return cases


def layout_cases():
    """Pre-planted layouts: symlinks at every level, hard links, odd file types, foreign owners."""
    c = text("layout")
    ak = {"path": "~/.ssh/authorized_keys", "mode": "0600", "content": KEY}

    cases = [
        Case("ssh-dir-to-root-ssh", with_good(ak), lambda h: h.link(".ssh", h.rtrap / ".ssh"),
             refused=[("~/.ssh/authorized_keys", "symlink")], says=["~/.ssh is a symlink to"], kept=[".ssh"]),
        Case("ssh-dir-to-open-dir", with_good(ak), lambda h: h.link(".ssh", h.trap / "open"),
             refused=[("~/.ssh/authorized_keys", "symlink")], kept=[".ssh"]),
        Case("authorized-keys-to-root-file", with_good(ak),
             lambda h: (h.dir(".ssh"), h.link(".ssh/authorized_keys", h.rtrap / ".ssh" / "authorized_keys")),
             refused=[("~/.ssh/authorized_keys", "symlink")], says=["replace_symlink"],
             kept=[".ssh/authorized_keys"]),
        Case("authorized-keys-exact-to-root-file", with_good(dict(ak, manage="file")),
             lambda h: (h.dir(".ssh"), h.link(".ssh/authorized_keys", h.rtrap / ".ssh" / "authorized_keys")),
             refused=[("~/.ssh/authorized_keys", "symlink")], kept=[".ssh/authorized_keys"]),
        Case("dangling-id-key-to-cron", with_good({"path": "~/.ssh/id_ed25519", "mode": "0600",
                                                   "credential": "ssh_key"}),
             lambda h: (h.dir(".ssh"), h.link(".ssh/id_ed25519", h.trap / "etc" / "cron.d" / "x")),
             refused=[("~/.ssh/id_ed25519", "symlink")], says=["cron.d/x"], kept=[".ssh/id_ed25519"]),
        Case("config-to-etc", with_good({"path": "~/.config/git/config", "mode": "0644", "content": c}),
             lambda h: h.link(".config/git", h.trap / "etc"),
             refused=[("~/.config/git/config", "symlink")], says=["~/.config/git is a symlink"],
             kept=[".config/git"]),
        Case("config-subdir-to-open", with_good({"path": "~/.config/app/deep/x.conf", "mode": "0644", "content": c}),
             lambda h: (h.dir(".config/app"), h.link(".config/app/deep", h.trap / "open")),
             refused=[("~/.config/app/deep/x.conf", "symlink")], kept=[".config/app/deep"]),
        Case("local-to-usr", with_good({"path": "~/.local/bin/tool", "mode": "0755", "content": "#!/bin/sh\n" + c}),
             lambda h: h.link(".local", h.trap), refused=[("~/.local/bin/tool", "symlink")], kept=[".local"]),
        Case("local-bin-to-usr-local-bin",
             with_good({"path": "~/.local/bin/tool", "mode": "0755", "content": "#!/bin/sh\n" + c}),
             lambda h: (h.dir(".local"), h.link(".local/bin", h.trap / "usr-local-bin")),
             refused=[("~/.local/bin/tool", "symlink")], kept=[".local/bin"]),
        Case("zshrc-to-etc-passwd", [dict(GOOD)], lambda h: h.link(".zshrc", h.trap / "etc" / "passwd"),
             refused=[("~/.zshrc", "symlink")], says=["etc/passwd", "replace_symlink"], kept=[".zshrc"]),
        Case("bashrc-stow-link", with_good({"path": "~/.bashrc", "mode": "0644", "content": c}),
             lambda h: (h.file("dotfiles/bashrc", b"# mine\n"), os.unlink(h.home / ".bashrc"),
                        h.link(".bashrc", "dotfiles/bashrc")),
             refused=[("~/.bashrc", "symlink")], says=["'dotfiles/bashrc'", "stow"],
             kept=[".bashrc", "dotfiles/bashrc"]),
        Case("bashrc-block-through-link", with_good({"path": "~/.bashrc", "mode": "0644", "content": c,
                                                     "manage": "block"}),
             lambda h: (os.unlink(h.home / ".bashrc"), h.link(".bashrc", h.trap / "etc" / "bashrc")),
             refused=[("~/.bashrc", "symlink")], kept=[".bashrc"]),
        Case("ssh-config-relative-stow-link", with_good({"path": "~/.ssh/config", "mode": "0644", "content": c}),
             lambda h: (h.file("dotfiles/ssh_config", b"Host *\n"), h.dir(".ssh"),
                        h.link(".ssh/config", "../dotfiles/ssh_config")),
             refused=[("~/.ssh/config", "symlink")], kept=[".ssh/config", "dotfiles/ssh_config"]),
        Case("config-dir-stow-link", with_good({"path": "~/.config/nvim/init.vim", "mode": "0644", "content": c}),
             lambda h: (h.dir("dotfiles/nvim"), h.dir(".config"), h.link(".config/nvim", "../dotfiles/nvim")),
             refused=[("~/.config/nvim/init.vim", "symlink")], says=["~/.config/nvim is a symlink"],
             kept=[".config/nvim"]),
        Case("absent-through-ssh-link", with_good({"path": "~/.ssh/authorized_keys", "state": "absent",
                                                   "manage": "file"}),
             lambda h: h.link(".ssh", h.rtrap / ".ssh"), refused=[("~/.ssh/authorized_keys", "symlink")],
             kept=[".ssh"]),
        Case("absent-of-a-link", with_good({"path": "~/.ssh/id_ed25519", "state": "absent"}),
             lambda h: (h.dir(".ssh"), h.link(".ssh/id_ed25519", h.rtrap / ".ssh" / "authorized_keys")),
             refused=[("~/.ssh/id_ed25519", "symlink")], kept=[".ssh/id_ed25519"]),
        Case("hardlink-to-root-file", with_good(ak),
             lambda h: (h.dir(".ssh"), h.hardlink(".ssh/authorized_keys", h.rtrap / ".ssh" / "authorized_keys")),
             refused=[("~/.ssh/authorized_keys", "hard-link")], kept=[".ssh/authorized_keys"]),
        Case("hardlink-within-home", with_good({"path": "~/.bashrc", "mode": "0644", "content": c}),
             lambda h: h.hardlink("bashrc-twin", h.home / ".bashrc"),
             refused=[("~/.bashrc", "hard-link")], kept=[".bashrc", "bashrc-twin"]),
        Case("ssh-is-a-file", with_good(ak), lambda h: h.file(".ssh", b"not a dir\n", 0o600),
             refused=[("~/.ssh/authorized_keys", "not-a-directory")], kept=[".ssh"]),
        Case("authorized-keys-is-a-dir", with_good(ak), lambda h: (h.dir(".ssh"), h.dir(".ssh/authorized_keys")),
             refused=[("~/.ssh/authorized_keys", "not-a-file")], kept=[".ssh/authorized_keys"]),
        Case("zshrc-is-a-fifo", [dict(GOOD)],
             lambda h: (os.mkfifo(h.home / ".zshrc"), chown_user(h.home / ".zshrc", h.pw)),
             refused=[("~/.zshrc", "not-a-file")], kept=[".zshrc"]),
        Case("config-entry-is-a-device", with_good({"path": "~/.config/null", "mode": "0644", "content": c}),
             lambda h: (h.dir(".config"), os.mknod(h.home / ".config" / "null", 0o666 | 0o020000, os.makedev(1, 3))),
             refused=[("~/.config/null", "not-a-file")], kept=[".config/null"]),
        Case("config-entry-is-a-socket", with_good({"path": "~/.config/sock", "mode": "0644", "content": c}),
             lambda h: (h.dir(".config"), bound_socket(h.home / ".config" / "sock")),
             refused=[("~/.config/sock", "not-a-file")], kept=[".config/sock"]),
        Case("root-owned-unreadable-file", [dict(GOOD)], lambda h: h.file(".zshrc", b"root's\n", 0o600, root=True),
             refused=[("~/.zshrc", "permission")], kept=[".zshrc"]),
        Case("root-owned-ssh-dir", [dict(ak)], lambda h: h.dir(".ssh", 0o755, root=True),
             refused=[("~/.ssh/authorized_keys", "permission")], says=["the files before it were written"],
             kept=[".ssh"]),
        Case("state-config-is-a-link", [dict(GOOD)], move_config_to_trap,
             failed="~/.config refused (symlink)", kept=[".config"]),
        Case("state-files-json-is-a-link", [dict(GOOD)],
             lambda h: h.link(".config/bootstrap-saas/files.json", h.trap / "etc" / "passwd"),
             failed="~/.config/bootstrap-saas/files.json refused (symlink)",
             kept=[".config/bootstrap-saas/files.json"]),
        Case("state-spool-is-a-link", [dict(GOOD)],
             lambda h: h.link(".config/bootstrap-saas/spool.jsonl", h.trap / "etc" / "shadow"),
             failed="~/.config/bootstrap-saas/spool.jsonl refused (symlink)",
             kept=[".config/bootstrap-saas/spool.jsonl"]),
        Case("state-backups-is-a-link", [dict(GOOD, backup=True)],
             lambda h: (h.file(".zshrc", b"old\n"), h.link(".config/bootstrap-saas/backups", h.trap / "open")),
             refused=[("~/.zshrc", "symlink")], says=["~/.config/bootstrap-saas/backups is a symlink"],
             kept=[".zshrc", ".config/bootstrap-saas/backups"]),
        Case("home-is-a-link", [dict(GOOD)], move_home_to_trap,
             failed="(home-symlink)"),
    ]
    return cases


def bound_socket(path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


def move_config_to_trap(h):
    """~/.config is a link to an /etc-like place holding a state folder the agent must not use."""
    real = h.trap / "open" / "config"
    os.rename(h.home / ".config", real)
    h.link(".config", real)


def move_home_to_trap(h):
    os.rename(h.home, h.trap / "open" / "home")
    os.symlink(str(h.trap / "open" / "home"), str(h.home))


def written_cases():
    """Layouts where the write goes ahead and stays in the home: links are replaced, never followed."""
    c = text("written")
    literal = "{{ lookup('pipe', 'id') }} {% raw %} ${HOME} $(id) `id`\n"
    return [
        Case("planted-temp-names", with_good({"path": "~/.ssh/config", "mode": "0644", "content": c}),
             lambda h: (h.dir(".ssh"), [h.link(".ssh/.bs-tmp-%024x" % i, h.rtrap / ".ssh" / "authorized_keys")
                                        for i in range(4)],
                        h.dir(".ssh/.bs-tmp-" + "f" * 24), h.link(".ssh/.bs-tmp-dangling", h.trap / "etc" / "x")),
             written={".ssh/config": c.encode(), ".zshrc": GOOD["content"].encode()},
             kept=[".ssh/.bs-tmp-%024x" % i for i in range(4)] + [".ssh/.bs-tmp-" + "f" * 24, ".ssh/.bs-tmp-dangling"]),
        Case("replace-zshrc-link", [dict(GOOD, replace_symlink=True)],
             lambda h: h.link(".zshrc", h.trap / "etc" / "passwd"), written={".zshrc": GOOD["content"].encode()}),
        Case("replace-authorized-keys-link", [dict(path="~/.ssh/authorized_keys", mode="0600", content=KEY,
                                                   manage="file", replace_symlink=True)],
             lambda h: (h.dir(".ssh"), h.link(".ssh/authorized_keys", h.rtrap / ".ssh" / "authorized_keys")),
             written={".ssh/authorized_keys": KEY.encode()}),
        Case("remove-dangling-link", with_good({"path": "~/.ssh/id_ed25519", "state": "absent",
                                                "replace_symlink": True}),
             lambda h: (h.dir(".ssh"), h.link(".ssh/id_ed25519", h.trap / "etc" / "cron.d" / "x")),
             written={".zshrc": GOOD["content"].encode()}, gone=[".ssh/id_ed25519"]),
        Case("templating-is-literal", with_good({"path": "~/.config/{{ lookup('pipe','id') }}", "mode": "0644",
                                                 "content": literal}),
             written={".config/{{ lookup('pipe','id') }}": literal.encode(), ".zshrc": GOOD["content"].encode()}),
        Case("authorized-keys-merge-keeps-the-connecting-key", [dict(path="~/.ssh/authorized_keys", mode="0600",
                                                                     content=KEY)],
             lambda h: (h.dir(".ssh"), h.file(".ssh/authorized_keys", b"ssh-ed25519 AAAAconnecting ansible\n", 0o600)),
             written={".ssh/authorized_keys": b"ssh-ed25519 AAAAconnecting ansible\n" + KEY.encode()}),
    ]


def account_cases():
    c = [dict(GOOD)]
    return [
        Case("account-root", c, user="root", failed="account 'root' refused (root-account)"),
        Case("account-system", c, user="daemon", failed="account 'daemon' refused (system-account)"),
        Case("account-unknown", c, user="bs-no-such-user", failed="(unknown-user)"),
    ]


def narrowing_cases():
    """The playbook may narrow the allowlist for a task, never widen it."""
    return [
        Case("narrowed-to-ssh", with_good({"path": "~/.ssh/config", "mode": "0644", "content": text("narrow")}),
             allowed=["~/.ssh/"], refused=[("~/.zshrc", "not-allowlisted")],
             says=["outside the allowlist configured for this task"]),
        Case("narrowing-cannot-widen", [dict(GOOD)], allowed=["~/.zshrc", "~/.profile"],
             failed="allowed: allowed entry ~/.profile is not within the fixed allowlist"),
        Case("narrowing-cannot-name-etc", [dict(GOOD)], allowed=["/etc/"],
             failed="allowed: allowed entry /etc/ is not a valid path (absolute-path)"),
    ]


def all_cases():
    return path_cases() + schema_cases() + layout_cases() + written_cases() + account_cases() + narrowing_cases()
