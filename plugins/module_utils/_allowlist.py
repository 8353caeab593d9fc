# -*- coding: utf-8 -*-
# Copyright: contributors to bootstrap_saas.provisioning
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one allowlist of home paths a profile may write, and the grammar of profile paths.

Target-side code: Python 3.8+ standard library only.

The profile comes from the network and is treated as hostile; the allowlist is fixed here and
configuration may only narrow it (``allowed``), never widen it.

Path grammar (every rule below refuses with ``PathRefused``, naming the path, the rule and what is
allowed; rules are checked in this order, the first that fails is reported):

``not-a-string``
    the path is not a text string.
``control-character``
    NUL, any other C0 control character or DEL anywhere in the path.
``non-ascii``
    any character outside ASCII. Refused rather than normalised: look-alike letters (Cyrillic
    ``ѕ`` for ``s``), full-width slashes and combining sequences would otherwise make a path that
    reads as ``~/.ssh/config`` name another file, and normalising would make the same bytes mean
    different files on different filesystems. Dotfile paths are ASCII in practice.
``too-long``
    a component over 255 bytes or a path over 4096 bytes.
``absolute-path``
    the path starts with ``/`` (``/etc/passwd``).
``not-home-relative``
    anything that does not start with ``~/``: ``~user/...``, ``$HOME/...``, ``.ssh/x``, ``~``.
    ``~/`` means the target user's home from the password database; nothing else expands, and
    ``~``, ``$`` or ``{{`` later in a path are literal characters of a file name.
``parent-component``
    a ``..`` component anywhere.
``non-canonical``
    an empty component (``~/.config//x``, a trailing ``/``), a ``.`` component (``~/./.ssh/x``) or
    a component with leading or trailing white space. Each file has exactly one spelling, so that
    allowlist checks, duplicates and audit records all agree on which file is meant.
``not-allowlisted``
    not strictly below ``~/.config/``, ``~/.ssh/`` or ``~/.local/bin/`` and not exactly
    ``~/.zshrc`` or ``~/.bashrc``. Matching is by whole, case-sensitive components, so sibling
    prefixes (``~/.config-evil/x``, ``~/.ssh2/k``, ``~/.local/binx``, ``~/.zshrc.bak``,
    ``~/.bashrc/x``), the directories themselves (``~/.ssh``) and case variants (``~/.SSH/x``,
    which a case-folding filesystem would map onto ``~/.ssh``) are all refused. Also used when the
    path is outside a configured narrowing.
``reserved-agent-state``
    ``~/.config/bootstrap-saas`` and anything below it (compared case-insensitively, for
    case-folding filesystems): the agent's own machine secret, run token and spool.
``mode``
    see ``file_mode``.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

ALLOWED_DIRS = ((".config",), (".ssh",), (".local", "bin"))   # entries strictly below these
ALLOWED_FILES = ((".zshrc",), (".bashrc",))                    # exactly these
RESERVED = (".config", "bootstrap-saas")                        # agent's own state: profile entries refused

# Mode of a profile entry that does not set one: private unless said otherwise.
DEFAULT_MODE = 0o600

# Names under ~/.ssh that hold no secret and that ssh tools expect to be readable by others.
SSH_PUBLIC_NAMES = ("config", "known_hosts", "authorized_keys")

NAME_MAX = 255
PATH_MAX = 4096
_MAX_SHOWN = 160
_MODE_TEXT = re.compile(r"\A[0-7]{3,4}\Z")


def display_path(parts):
    """``(".ssh", "config")`` -> ``"~/.ssh/config"``."""
    return "~/" + "/".join(parts)


def _dir_text(parts):
    return display_path(parts) + "/"


def describe_allowlist(allowed=None):
    """The allowlist (or a narrowing of it) as people write it, for messages and docs."""
    if allowed is not None:
        return ", ".join(_dir_text(p) if is_dir else display_path(p)
                         for p, is_dir in _narrowing(allowed))
    return ", ".join([_dir_text(d) for d in ALLOWED_DIRS] + [display_path(f) for f in ALLOWED_FILES])


def _shown(path):
    """The path as it can safely appear in a message or a log: escaped, bounded in length."""
    if not isinstance(path, str):
        text = repr(path)
    elif all(" " <= c <= "~" for c in path):
        text = path
    else:
        text = ascii(path)[1:-1]
    if len(text) > _MAX_SHOWN:
        text = text[:_MAX_SHOWN] + "..."
    return text


class PathRefused(Exception):
    """A profile path or mode that the allowlist refuses.

    ``path`` is the value as given, ``rule`` a short kebab-case name (see the module docstring),
    ``message`` what is wrong; ``allowed`` what would be accepted (defaults to the allowlist).
    """

    def __init__(self, path, rule, message, allowed=None):
        self.path = path
        self.rule = rule
        self.message = message
        self.allowed = describe_allowlist() if allowed is None else allowed
        super(PathRefused, self).__init__(path, rule, message)

    def __str__(self):
        return "path %s refused (%s): %s; allowed: %s" % (_shown(self.path), self.rule, self.message, self.allowed)


def _components_problem(text):
    """Rule and message for the first grammar problem of the part after ``~/``, else None."""
    components = text.split("/")
    if ".." in components:
        return "parent-component", "'..' components are not allowed"
    for c in components:
        if c == "":
            return "non-canonical", "empty component ('//' or a trailing '/'); write each path one way"
        if c == ".":
            return "non-canonical", "'.' component; write each path one way"
        if c != c.strip():
            return "non-canonical", "component %r has leading or trailing white space" % c
        if len(c.encode("ascii")) > NAME_MAX:
            return "too-long", "a component is longer than %d bytes" % NAME_MAX
    return None


def _grammar_parts(path):
    """Check the grammar only (not the allowlist); return the components or raise PathRefused."""
    if not isinstance(path, str):
        raise PathRefused(path, "not-a-string", "a path must be a string such as '~/.ssh/config'")
    for c in path:
        if c < " " or c == "\x7f":
            raise PathRefused(path, "control-character", "control character %s in the path" % ascii(c))
    for c in path:
        if c > "\x7f":
            raise PathRefused(path, "non-ascii", "non-ASCII character %s (look-alike letters are refused)" % ascii(c))
    if len(path) > PATH_MAX:
        raise PathRefused(path, "too-long", "the path is longer than %d bytes" % PATH_MAX)
    if path.startswith("/"):
        raise PathRefused(path, "absolute-path", "absolute paths are not allowed; write '~/...' for the user's home")
    if not path.startswith("~/"):
        if path.startswith("~"):
            why = "only '~/' (the target user's home) is understood; '~user' and a bare '~' are not"
        elif path.startswith("$"):
            why = "variables are not expanded; write '~/...' for the user's home"
        else:
            why = "paths must start with '~/' (the target user's home)"
        raise PathRefused(path, "not-home-relative", why)
    problem = _components_problem(path[2:])
    if problem:
        raise PathRefused(path, problem[0], problem[1])
    return tuple(path[2:].split("/"))


def is_reserved(parts):
    """True for ``~/.config/bootstrap-saas`` and anything below it (case-insensitive)."""
    return tuple(p.lower() for p in parts[:len(RESERVED)]) == RESERVED


def in_fixed_allowlist(parts):
    """True if ``parts`` names a file the fixed allowlist admits (reserved state included)."""
    parts = tuple(parts)
    if parts in ALLOWED_FILES:
        return True
    return any(len(parts) > len(d) and parts[:len(d)] == d for d in ALLOWED_DIRS)


def _narrowing(allowed):
    """Parse a narrowing list into ((parts, is_dir), ...); ValueError if it widens the allowlist."""
    if isinstance(allowed, (str, bytes)) or not hasattr(allowed, "__iter__"):
        raise ValueError("allowed must be a list of paths such as ['~/.ssh/', '~/.zshrc'], not %r" % (allowed,))
    result = []
    for entry in allowed:
        is_dir = isinstance(entry, str) and entry.endswith("/") and entry != "~/"
        try:
            parts = _grammar_parts(entry[:-1] if is_dir else entry)
        except PathRefused as e:
            raise ValueError("allowed entry %s is not a valid path (%s): %s" % (_shown(entry), e.rule, e.message))
        inside = any(parts[:len(d)] == d for d in ALLOWED_DIRS) if is_dir else in_fixed_allowlist(parts)
        if not inside or is_reserved(parts):
            raise ValueError("allowed entry %s is not within the fixed allowlist (%s); configuration may "
                             "narrow the allowlist, never widen it" % (_shown(entry), describe_allowlist()))
        result.append((parts, is_dir))
    if not result:
        raise ValueError("allowed must name at least one path; leave it unset for the whole allowlist")
    return tuple(result)


def check_narrowing(allowed):
    """Raise ``ValueError`` unless ``allowed`` is a valid narrowing of the fixed allowlist."""
    _narrowing(allowed)


def profile_path_parts(path, allowed=None):
    """``"~/.ssh/config"`` -> ``(".ssh", "config")``, or raise ``PathRefused``.

    ``allowed`` optionally narrows the allowlist: a list such as ``["~/.ssh/", "~/.zshrc"]`` where a
    trailing ``/`` means everything strictly below that directory. Each entry must lie within the
    fixed allowlist, otherwise ``ValueError`` (a configuration error, not a profile error).
    """
    narrowing = _narrowing(allowed) if allowed is not None else None
    parts = _grammar_parts(path)
    if not in_fixed_allowlist(parts):
        raise PathRefused(path, "not-allowlisted", "only these home paths may be written")
    if is_reserved(parts):
        raise PathRefused(path, "reserved-agent-state",
                          "~/.config/bootstrap-saas/ holds the agent's own state and cannot be a profile entry")
    if narrowing is not None:
        if not any(parts[:len(p)] == p and len(parts) > len(p) if is_dir else parts == p
                   for p, is_dir in narrowing):
            raise PathRefused(path, "not-allowlisted", "outside the allowlist configured for this task",
                              allowed=describe_allowlist(allowed))
    return parts


def _is_ssh_public(parts):
    name = parts[-1]
    return name.endswith(".pub") or name in SSH_PUBLIC_NAMES


def describe_modes(parts):
    """What ``file_mode`` accepts for the file ``parts``, for messages."""
    if parts[:1] == (".ssh",):
        if _is_ssh_public(parts):
            return "a quoted octal string, at most '0644'"
        return "'0600' or '0400' (private material under ~/.ssh)"
    if parts[:2] == (".local", "bin"):
        return "a quoted octal string, at most '0755'"
    return "a quoted octal string, at most '0644'"


def file_mode(value, parts):
    """A profile entry's mode: ``"0644"`` -> ``0o644``; raise ``PathRefused(rule="mode")``.

    ``value`` must be a quoted octal string of 3 or 4 digits (``None`` gives ``DEFAULT_MODE``). An
    integer is refused because YAML reads an unquoted ``0600`` as 384. Always refused: setuid, setgid
    and sticky bits, group- or world-writable modes, modes the owner cannot read. Executable bits
    only below ``~/.local/bin/``. Below ``~/.ssh/``: ``*.pub``, ``config``, ``known_hosts`` and
    ``authorized_keys`` at most 0644, anything else (private keys and other secrets) 0600 or 0400.
    """
    parts = tuple(parts)
    path = display_path(parts)
    allowed = describe_modes(parts)
    if value is None:
        value = "%04o" % DEFAULT_MODE
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PathRefused(path, "mode", "mode %r is not a quoted octal string" % (value,), allowed=allowed)
    if isinstance(value, int):
        hint = ""
        if 0 <= value <= 0o7777:
            hint = "; did you mean '%04o'? (YAML reads an unquoted 0%o as the integer %d)" % (value, value, value)
        raise PathRefused(path, "mode", "mode must be a quoted string such as \"0644\", not the integer %d%s"
                          % (value, hint), allowed=allowed)
    if not _MODE_TEXT.match(value):
        raise PathRefused(path, "mode", "mode %s is not 3 or 4 octal digits" % _shown(value), allowed=allowed)
    mode = int(value, 8)
    text = "%04o" % mode

    def refuse(why):
        raise PathRefused(path, "mode", "mode %s: %s" % (text, why), allowed=allowed)

    if mode & 0o7000:
        refuse("setuid, setgid and sticky bits are not allowed")
    if mode & 0o022:
        refuse("group- or world-writable modes are not allowed")
    if not mode & 0o400:
        refuse("the owner must be able to read the file")
    if mode & 0o111 and parts[:2] != (".local", "bin"):
        refuse("executable bits are allowed only below ~/.local/bin/")
    if parts[:1] == (".ssh",):
        if _is_ssh_public(parts):
            if mode & ~0o644:
                refuse("too permissive for %s" % path)
        elif mode not in (0o600, 0o400):
            refuse("%s may hold private material and must be readable by its owner only" % path)
    return mode
