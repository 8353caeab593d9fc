"""The allowlist and path grammar: one table of paths, one of modes."""
import pytest

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._allowlist import (
    ALLOWED_DIRS,
    ALLOWED_FILES,
    PathRefused,
    describe_allowlist,
    file_mode,
    profile_path_parts,
)

GOOD = [
    ("~/.ssh/config", (".ssh", "config")),
    ("~/.ssh/authorized_keys", (".ssh", "authorized_keys")),
    ("~/.ssh/id_ed25519", (".ssh", "id_ed25519")),
    ("~/.ssh/config.d/work", (".ssh", "config.d", "work")),
    ("~/.config/nvim/init.lua", (".config", "nvim", "init.lua")),
    ("~/.config/git/config", (".config", "git", "config")),
    ("~/.config/bootstrap-saas-notes", (".config", "bootstrap-saas-notes")),
    ("~/.config/bootstrap-saasx/y", (".config", "bootstrap-saasx", "y")),
    ("~/.config/x/bootstrap-saas/y", (".config", "x", "bootstrap-saas", "y")),
    ("~/.config/.hidden", (".config", ".hidden")),
    ("~/.config/a b", (".config", "a b")),
    ("~/.config/~root", (".config", "~root")),           # literal, never expanded
    ("~/.config/$HOME", (".config", "$HOME")),            # literal, never expanded
    ("~/.config/...", (".config", "...")),
    ("~/.local/bin/tool", (".local", "bin", "tool")),
    ("~/.local/bin/sub/tool", (".local", "bin", "sub", "tool")),
    ("~/.zshrc", (".zshrc",)),
    ("~/.bashrc", (".bashrc",)),
]

BAD = [
    ("/etc/passwd", "absolute-path"),
    ("/usr/local/bin/x", "absolute-path"),
    ("/opt/x", "absolute-path"),
    ("//etc/passwd", "absolute-path"),
    ("/home/u/.ssh/config", "absolute-path"),
    ("~root/.ssh/authorized_keys", "not-home-relative"),
    ("~otheruser/.bashrc", "not-home-relative"),
    ("~", "not-home-relative"),
    ("$HOME/.ssh/config", "not-home-relative"),
    ("${HOME}/.zshrc", "not-home-relative"),
    (".ssh/config", "not-home-relative"),
    ("", "not-home-relative"),
    (" ~/.zshrc", "not-home-relative"),
    ("~\\.ssh\\config", "not-home-relative"),
    ("~/../root/.ssh/authorized_keys", "parent-component"),
    ("~/.ssh/../../etc/shadow", "parent-component"),
    ("~/.config/..", "parent-component"),
    ("~/.config//x", "non-canonical"),
    ("~/./.ssh/x", "non-canonical"),
    ("~/.ssh/./x", "non-canonical"),
    ("~/.ssh/", "non-canonical"),
    ("~/", "non-canonical"),
    ("~//.ssh/config", "non-canonical"),
    ("~/.ssh/config ", "non-canonical"),
    ("~/.ssh/ config", "non-canonical"),
    ("~/.ssh/con\x00fig", "control-character"),
    ("~/.ssh/config\n", "control-character"),
    ("~/.zshrc\r", "control-character"),
    ("~/.config/a\tb", "control-character"),
    ("~/.config/\x1b[2Jx", "control-character"),
    ("~/.config/x\x7f", "control-character"),
    ("~/.\u0455sh/config", "non-ascii"),              # Cyrillic dze for s
    ("~/.ssh\u2215config", "non-ascii"),              # division slash
    ("~/.ssh/\uff0e\uff0e/x", "non-ascii"),            # full-width dots
    ("~/.config/cafe\u0301", "non-ascii"),             # combining accent
    ("~/.zshrc\u200b", "non-ascii"),                   # zero-width space
    ("~/.config/" + "a" * 256, "too-long"),
    ("~/.config-evil/x", "not-allowlisted"),
    ("~/.ssh2/k", "not-allowlisted"),
    ("~/.local/binx", "not-allowlisted"),
    ("~/.local/binx/tool", "not-allowlisted"),
    ("~/.local/bin", "not-allowlisted"),
    ("~/.local/share/x", "not-allowlisted"),
    ("~/.local", "not-allowlisted"),
    ("~/.zshrc.bak", "not-allowlisted"),
    ("~/.bashrc/x", "not-allowlisted"),
    ("~/.config", "not-allowlisted"),
    ("~/.ssh", "not-allowlisted"),
    ("~/.SSH/x", "not-allowlisted"),
    ("~/.Config/x", "not-allowlisted"),
    ("~/.ZSHRC", "not-allowlisted"),
    ("~/.profile", "not-allowlisted"),
    ("~/.bash_profile", "not-allowlisted"),
    ("~/x/.ssh/config", "not-allowlisted"),
    ("~/.config/bootstrap-saas", "reserved-agent-state"),
    ("~/.config/bootstrap-saas/run.json", "reserved-agent-state"),
    ("~/.config/bootstrap-saas/machine-secret", "reserved-agent-state"),
    ("~/.config/Bootstrap-SaaS/run.json", "reserved-agent-state"),
    ("~/.config/bootstrap-saas/sub/x", "reserved-agent-state"),
]


def test_table_is_large_enough():
    assert len(GOOD) + len(BAD) >= 40


@pytest.mark.parametrize("path,parts", GOOD)
def test_good_paths(path, parts):
    assert profile_path_parts(path) == parts


@pytest.mark.parametrize("path,rule", BAD)
def test_bad_paths(path, rule):
    with pytest.raises(PathRefused) as info:
        profile_path_parts(path)
    e = info.value
    assert e.rule == rule
    assert e.path == path
    text = str(e)
    assert rule in text
    assert describe_allowlist() in text


@pytest.mark.parametrize("value", [None, b"~/.zshrc", 3, ["~/.zshrc"]])
def test_non_string_paths(value):
    with pytest.raises(PathRefused) as info:
        profile_path_parts(value)
    assert info.value.rule == "not-a-string"


def test_message_is_safe_to_print():
    with pytest.raises(PathRefused) as info:
        profile_path_parts("~/.ssh/x\x1b[31m\n" + "y" * 500)
    text = str(info.value)
    assert "\x1b" not in text and "\n" not in text
    assert len(text) < 600


def test_describe_allowlist():
    assert describe_allowlist() == "~/.config/, ~/.ssh/, ~/.local/bin/, ~/.zshrc, ~/.bashrc"
    assert ALLOWED_DIRS == ((".config",), (".ssh",), (".local", "bin"))
    assert ALLOWED_FILES == ((".zshrc",), (".bashrc",))


def test_str_names_path_rule_and_allowed():
    e = PathRefused("~/.x", "not-allowlisted", "nope")
    assert (e.path, e.rule, e.message) == ("~/.x", "not-allowlisted", "nope")
    assert str(e) == ("path ~/.x refused (not-allowlisted): nope; allowed: "
                      "~/.config/, ~/.ssh/, ~/.local/bin/, ~/.zshrc, ~/.bashrc")


# narrowing --------------------------------------------------------------------------------------

NARROW = ["~/.ssh/", "~/.zshrc", "~/.config/nvim/"]


@pytest.mark.parametrize("path,parts", [
    ("~/.ssh/config", (".ssh", "config")),
    ("~/.zshrc", (".zshrc",)),
    ("~/.config/nvim/init.lua", (".config", "nvim", "init.lua")),
])
def test_narrowing_admits(path, parts):
    assert profile_path_parts(path, allowed=NARROW) == parts


@pytest.mark.parametrize("path,rule", [
    ("~/.bashrc", "not-allowlisted"),
    ("~/.config/git/config", "not-allowlisted"),
    ("~/.config/nvim", "not-allowlisted"),
    ("~/.local/bin/x", "not-allowlisted"),
    ("/etc/passwd", "absolute-path"),
    ("~/.config/bootstrap-saas/x", "reserved-agent-state"),
])
def test_narrowing_refuses(path, rule):
    with pytest.raises(PathRefused) as info:
        profile_path_parts(path, allowed=NARROW)
    assert info.value.rule == rule
    if rule == "not-allowlisted":
        assert "~/.ssh/, ~/.zshrc, ~/.config/nvim/" in str(info.value)


@pytest.mark.parametrize("allowed", [
    ["~/"],
    ["~/.local/"],
    ["~/.profile"],
    ["/etc/"],
    ["~/.ssh/../"],
    ["~/.config/bootstrap-saas/"],
    ["~/.config/bootstrap-saas/run.json"],
    ["~/.ssh"],          # the directory as a file: nothing could ever match; a mistake
    [],
    "~/.ssh/",
    42,
])
def test_narrowing_never_widens(allowed):
    with pytest.raises(ValueError):
        profile_path_parts("~/.ssh/config", allowed=allowed)


def test_narrowing_to_a_single_file_below_a_dir():
    assert profile_path_parts("~/.ssh/config", allowed=["~/.ssh/config"]) == (".ssh", "config")
    with pytest.raises(PathRefused):
        profile_path_parts("~/.ssh/id_rsa", allowed=["~/.ssh/config"])


# modes ------------------------------------------------------------------------------------------

SSH_KEY = (".ssh", "id_ed25519")
SSH_PUB = (".ssh", "id_ed25519.pub")
SSH_CONFIG = (".ssh", "config")
SSH_KNOWN = (".ssh", "known_hosts")
SSH_AUTH = (".ssh", "authorized_keys")
BIN = (".local", "bin", "tool")
RC = (".zshrc",)
CONF = (".config", "git", "config")

MODES_OK = [
    ("0600", SSH_KEY, 0o600),
    ("0400", SSH_KEY, 0o400),
    ("600", SSH_KEY, 0o600),
    ("0644", SSH_PUB, 0o644),
    ("0600", SSH_PUB, 0o600),
    ("0644", SSH_CONFIG, 0o644),
    ("0640", SSH_KNOWN, 0o640),
    ("0644", SSH_AUTH, 0o644),
    ("0755", BIN, 0o755),
    ("0700", BIN, 0o700),
    ("0644", BIN, 0o644),
    ("0644", RC, 0o644),
    ("0600", RC, 0o600),
    ("0444", CONF, 0o444),
    ("0640", CONF, 0o640),
    (None, CONF, 0o600),
    (None, SSH_KEY, 0o600),
]

MODES_BAD = [
    (0o600, SSH_KEY, "did you mean '0600'"),
    (384, RC, "did you mean '0600'"),
    (644, RC, "integer 644"),
    (True, RC, "not a quoted octal"),
    (6.44, RC, "not a quoted octal"),
    ("0o644", RC, "not 3 or 4 octal"),
    ("0x1a4", RC, "not 3 or 4 octal"),
    ("rw-r--r--", RC, "not 3 or 4 octal"),
    ("64", RC, "not 3 or 4 octal"),
    ("00644", RC, "not 3 or 4 octal"),
    ("0648", RC, "not 3 or 4 octal"),
    (" 0644", RC, "not 3 or 4 octal"),
    ("0644\n", RC, "not 3 or 4 octal"),
    ("", RC, "not 3 or 4 octal"),
    ("4755", BIN, "setuid"),
    ("2755", BIN, "setuid, setgid"),
    ("1644", CONF, "sticky"),
    ("0664", RC, "writable"),
    ("0646", CONF, "writable"),
    ("0777", BIN, "writable"),
    ("0000", CONF, "owner must be able to read"),
    ("0200", CONF, "owner must be able to read"),
    ("0755", RC, "executable"),
    ("0744", CONF, "executable"),
    ("0700", SSH_KEY, "executable"),
    ("0644", SSH_KEY, "private material"),
    ("0640", SSH_KEY, "private material"),
    ("0604", (".ssh", "config.d", "work"), "private material"),
    ("0444", SSH_KEY, "private material"),
    ("0655", SSH_PUB, "executable"),
    ("0664", SSH_AUTH, "writable"),
]


@pytest.mark.parametrize("value,parts,expected", MODES_OK)
def test_modes_accepted(value, parts, expected):
    assert file_mode(value, parts) == expected


@pytest.mark.parametrize("value,parts,fragment", MODES_BAD)
def test_modes_refused(value, parts, fragment):
    with pytest.raises(PathRefused) as info:
        file_mode(value, parts)
    assert info.value.rule == "mode"
    assert info.value.path == "~/" + "/".join(parts)
    assert fragment in str(info.value)


def test_mode_message_says_what_is_allowed():
    with pytest.raises(PathRefused) as info:
        file_mode("0644", SSH_KEY)
    assert "'0600' or '0400'" in str(info.value)
