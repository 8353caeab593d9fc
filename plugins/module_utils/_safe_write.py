# -*- coding: utf-8 -*-
# Copyright: contributors to bootstrap_saas.provisioning
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target accounts and the one safe writer below a user's home directory.

Target-side code: Python 3.8+ standard library only, Linux/POSIX (``dir_fd`` support).

Every module that writes anything below a home (profile files and the agent's own state in
``~/.config/bootstrap-saas/``) goes through ``HomeWriter``, so both get the same protection.

Account: ``resolve_account`` takes the home from the password database only, and refuses unknown
users, uid 0 and system accounts (uid below ``UID_MIN`` from ``/etc/login.defs``, default 1000, and
the ``nobody``/overflow uids) unless the caller explicitly allows them, since ``~`` of root makes
``~/.ssh/authorized_keys`` a root login.

Write procedure (the point of this file):

1. The home is opened once with ``O_DIRECTORY|O_NOFOLLOW``. Each component below it is opened
   from the previous directory's descriptor with ``O_DIRECTORY|O_NOFOLLOW``; a missing directory
   is created with ``mkdir(dir_fd=...)`` mode 0700 (existing directories keep their mode, except
   ``~/.ssh`` which is forced to 0700 whenever something is written below it). Any symlink on
   the way is refused (rule ``symlink``), anything else that is not a directory too (rule
   ``not-a-directory``): no symlink below the home is ever followed, and a directory swapped for
   a link after it was opened does not matter, since the held descriptor is used.
2. The destination, if it exists, must be a regular file with one link: a symlink is refused
   naming the link and its target (stow-style dotfiles are not replaced silently; rule
   ``symlink``) unless the caller asks to replace the link itself (``replace_symlink``: the link
   is renamed over, never followed); a directory or anything else is refused (rule
   ``not-a-file``); a file with more than one hard link too (rule ``hard-link``: replacing it
   would silently split it from its other names). Nothing is replaced then.
3. If content and mode already match (and the owner is the account), nothing is written.
4. A temporary file with a random name is created in the destination directory with
   ``O_CREAT|O_EXCL|O_NOFOLLOW`` mode 0600 (a planted name is never opened, another name is
   tried), written, fsync'd, given its final mode and owner on the descriptor, renamed over the
   destination relative to the directory descriptor, and the directory is fsync'd. After the
   rename the destination must be the very inode that was written (a temporary name swapped
   meanwhile is reported, rule ``changed``). On any failure the temporary file is removed; the
   destination is either the old file or the new one.
5. When the process is root and the account is not, all of the above runs with the account's
   identity (supplementary groups, effective gid, effective uid; restored in reverse order), so
   the kernel enforces what the user could do anyway and everything created is owned by the user.

Refusals raise ``WriteRefused`` (attributes ``path``, ``rule``, ``message``); operating-system
errors on the way are reported the same way (rule ``permission`` for EACCES/EPERM, ``changed``
for a directory moved or removed meanwhile, ``os-error`` otherwise), naming the path.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import errno
import os
import pwd
import secrets
import stat

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._allowlist import (
    ALLOWED_DIRS,
    display_path,
    in_fixed_allowlist,
)

__metaclass__ = type

LOGIN_DEFS = "/etc/login.defs"
DEFAULT_UID_MIN = 1000
# nobody / nogroup and the "no uid" values: never an ordinary account, whatever UID_MIN says.
OVERFLOW_UIDS = (65534, 65535, 4294967294, 4294967295)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_ATTEMPTS = 8
# Directory descriptors held for deferred_dir_sync() before they are synced early: far below open-file limits.
_MAX_UNSYNCED_DIRS = 64


class AccountRefused(Exception):
    """The target account is not one the agent writes for; ``user``, ``rule``, ``message``."""

    def __init__(self, user, rule, message):
        self.user = user
        self.rule = rule
        self.message = message
        super(AccountRefused, self).__init__(user, rule, message)

    def __str__(self):
        return "account %r refused (%s): %s" % (self.user, self.rule, self.message)


class WriteRefused(Exception):
    """A read, write or removal below the home that was refused or failed; nothing was changed."""

    def __init__(self, path, rule, message):
        self.path = path
        self.rule = rule
        self.message = message
        super(WriteRefused, self).__init__(path, rule, message)

    def __str__(self):
        return "%s refused (%s): %s" % (self.path, self.rule, self.message)


def uid_min(login_defs=LOGIN_DEFS):
    """``UID_MIN`` from login.defs, or 1000 if the file or the setting is missing or unreadable."""
    try:
        with open(login_defs, "r") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "UID_MIN":
                    try:
                        return int(fields[1], 0)
                    except ValueError:
                        return DEFAULT_UID_MIN
    except (IOError, OSError, UnicodeDecodeError):
        pass
    return DEFAULT_UID_MIN


def resolve_account(user, allow_system_user=False, login_defs=LOGIN_DEFS):
    """The password-database entry of ``user``, or raise ``AccountRefused``.

    Rules: ``unknown-user``, ``root-account``, ``system-account`` (the latter two lifted by
    ``allow_system_user``), ``home-not-absolute``, ``home-missing``, ``home-symlink``,
    ``home-not-directory``, ``home-owner`` (the home must belong to the account).
    """
    name = str(user) if user is not None else ""
    if not name or "\x00" in name or "/" in name:
        raise AccountRefused(user, "unknown-user", "no such user")
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise AccountRefused(name, "unknown-user", "no such user in the password database")
    if not allow_system_user:
        if account.pw_uid == 0:
            raise AccountRefused(name, "root-account", "uid 0: writing root's home would grant root logins; "
                                 "set allow_system_user to allow it explicitly")
        minimum = uid_min(login_defs)
        if account.pw_uid < minimum or account.pw_uid in OVERFLOW_UIDS:
            raise AccountRefused(name, "system-account", "uid %d is a system account (ordinary accounts have "
                                 "uid >= UID_MIN %d); set allow_system_user to allow it explicitly"
                                 % (account.pw_uid, minimum))
    home = account.pw_dir
    if not home.startswith("/") or os.path.normpath(home) != home:
        raise AccountRefused(name, "home-not-absolute", "home %r is not an absolute, normalised path" % home)
    try:
        st = os.lstat(home)
    except FileNotFoundError:
        raise AccountRefused(name, "home-missing", "home %s does not exist" % home)
    except OSError as e:
        raise AccountRefused(name, "home-missing", "home %s cannot be examined: %s" % (home, e.strerror))
    if stat.S_ISLNK(st.st_mode):
        raise AccountRefused(name, "home-symlink", "home %s is a symlink" % home)
    if not stat.S_ISDIR(st.st_mode):
        raise AccountRefused(name, "home-not-directory", "home %s is not a directory" % home)
    if st.st_uid != account.pw_uid:
        raise AccountRefused(name, "home-owner", "home %s is owned by uid %d, not by the account (uid %d)"
                             % (home, st.st_uid, account.pw_uid))
    return account


def _temp_name():
    return ".bs-tmp-" + secrets.token_hex(12)


def _check_parts(parts, directory=False):
    """Defence in depth: the writer only ever works inside the fixed allowlist."""
    parts = tuple(parts)
    shown = display_path(parts) if all(isinstance(p, str) for p in parts) else repr(parts)
    if not parts or any(not isinstance(p, str) or p in ("", ".", "..") or "/" in p or "\x00" in p for p in parts):
        raise WriteRefused(shown, "invalid-path", "path components must be plain names")
    if directory:
        ok = any(parts[:len(d)] == d or d[:len(parts)] == parts for d in ALLOWED_DIRS)
    else:
        ok = in_fixed_allowlist(parts)
    if not ok:
        raise WriteRefused(shown, "not-allowlisted", "the writer only works within the allowlist")
    return parts


def _check_mode(path, mode):
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise WriteRefused(path, "mode", "mode must be permission bits (no setuid, setgid or sticky)")
    if mode & 0o022:
        raise WriteRefused(path, "mode", "group- or world-writable modes are not allowed")


def _os_refusal(path, e):
    if e.errno == errno.ENOENT:
        # Every expected absence is handled where it can occur; this one means a directory that
        # was open was moved or removed meanwhile (the user can do that at any time).
        return WriteRefused(path, "changed", "a directory on the way to %s was moved or removed while it was "
                            "being written; run again" % path)
    rule = "permission" if e.errno in (errno.EACCES, errno.EPERM) else "os-error"
    return WriteRefused(path, rule, e.strerror or str(e))


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class HomeWriter:
    """Reads and writes below one account's home without following any symlink.

    Use as a context manager (or call ``close()``). ``parts`` arguments are component tuples as
    returned by ``_allowlist.profile_path_parts`` (or the agent's own ``(".config",
    "bootstrap-saas", NAME)``); they must lie within the fixed allowlist.
    """

    def __init__(self, account):
        self.account = account
        self.home = account.pw_dir
        self._uid = account.pw_uid
        self._gid = account.pw_gid
        self._home_fd = None
        self._depth = 0
        self._unsynced_dirs = None  # {(dev, ino): fd} inside deferred_dir_sync()
        euid = os.geteuid()
        if euid != 0 and euid != self._uid:
            raise AccountRefused(account.pw_name, "needs-root",
                                 "writing for another account needs root (running as uid %d)" % euid)
        self._drop = euid == 0 and self._uid != 0
        self._groups = None
        if self._drop:
            self._groups = os.getgrouplist(account.pw_name, self._gid)
        with self._identity():
            try:
                fd = os.open(self.home, _DIR_FLAGS)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise WriteRefused(self.home, "symlink", "the home directory is a symlink or not a directory")
                raise _os_refusal(self.home, e)
            st = os.fstat(fd)
            if st.st_uid != self._uid:
                os.close(fd)
                raise WriteRefused(self.home, "home-owner", "the home directory is not owned by %s"
                                   % account.pw_name)
            self._home_fd = fd

    # identity -----------------------------------------------------------------------------------

    def _identity(self):
        return _Identity(self)

    def _enter_identity(self):
        if self._depth:
            self._depth += 1
            return
        umask = os.umask(0o077)
        if self._drop:
            self._saved_groups = os.getgroups()
            try:
                os.setgroups(self._groups)
                os.setegid(self._gid)
                os.seteuid(self._uid)
            except BaseException:
                self._restore_identity()
                os.umask(umask)
                raise
        self._umask = umask
        self._depth = 1

    def _leave_identity(self):
        self._depth -= 1
        if self._depth > 0:
            return
        os.umask(self._umask)
        if self._drop:
            self._restore_identity()

    def _restore_identity(self):
        # uid first: only with euid 0 may the gid and groups be set back.
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(self._saved_groups)

    # lifecycle ----------------------------------------------------------------------------------

    def close(self):
        self._sync_deferred_dirs()
        if self._home_fd is not None:
            os.close(self._home_fd)
            self._home_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # directory syncs ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def deferred_dir_sync(self):
        """Within the block, each changed directory is fsync'd once, at the end, not after every entry.

        A file's data is still fsync'd before its rename, so after a crash every file is the old or
        the new one, never partial; only the renames of the block become durable together (a
        profile of 1,000 files otherwise spends half its write time in directory fsyncs).
        """
        if self._unsynced_dirs is not None:
            yield
            return
        self._unsynced_dirs = {}
        try:
            yield
        except BaseException:
            try:
                self._sync_deferred_dirs()
            except WriteRefused:
                pass  # the error that ended the block is the one to report
            finally:
                self._unsynced_dirs = None
            raise
        try:
            self._sync_deferred_dirs()
        finally:
            self._unsynced_dirs = None

    def _sync_dir(self, fd):
        if self._unsynced_dirs is None:
            os.fsync(fd)
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) not in self._unsynced_dirs:
            self._unsynced_dirs[(st.st_dev, st.st_ino)] = os.dup(fd)
            if len(self._unsynced_dirs) >= _MAX_UNSYNCED_DIRS:
                self._sync_deferred_dirs()

    def _sync_deferred_dirs(self):
        pending, self._unsynced_dirs = self._unsynced_dirs, ({} if self._unsynced_dirs is not None else None)
        error = None
        for fd in (pending or {}).values():
            try:
                os.fsync(fd)
            except OSError as e:
                error = error or e
            finally:
                os.close(fd)
        if error is not None:
            raise _os_refusal(self.home, error)

    # walking ------------------------------------------------------------------------------------

    def _open_dir(self, parts, create, mode=0o700):
        """Descriptor of the directory ``parts`` below the home, or None if missing and not created."""
        if self._home_fd is None:
            raise ValueError("HomeWriter is closed")
        fd = os.dup(self._home_fd)
        try:
            for i, name in enumerate(parts):
                shown = display_path(parts[:i + 1])
                created = False
                try:
                    try:
                        nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if not create:
                            os.close(fd)
                            return None
                        try:
                            os.mkdir(name, mode, dir_fd=fd)
                            created = True
                        except FileExistsError:
                            pass    # created meanwhile; opened below without following links
                        nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._not_a_directory(fd, name, shown)
                    raise _os_refusal(shown, e)
                parent, fd = fd, nfd
                try:
                    if created:
                        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                            os.fchmod(fd, mode)
                        self._sync_dir(parent)
                finally:
                    os.close(parent)
                if create and i == 0 and name == ".ssh" and stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:
                    try:
                        os.fchmod(fd, 0o700)
                    except OSError as e:
                        refusal = _os_refusal(shown, e)
                        refusal.message = "cannot set mode 0700 on ~/.ssh: %s" % refusal.message
                        raise refusal
            return fd
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise

    @staticmethod
    def _not_a_directory(dir_fd, name, shown):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is None or stat.S_ISDIR(st.st_mode):
            return WriteRefused(shown, "changed", "%s was a symlink or not a directory when opened and changed "
                                "since; refusing to write while it changes" % shown)
        if stat.S_ISLNK(st.st_mode):
            return WriteRefused(shown, "symlink", "%s is a symlink to %s; symlinks below the home are never followed"
                                % (shown, _link_target(dir_fd, name)))
        return WriteRefused(shown, "not-a-directory", "%s exists and is not a directory" % shown)

    def _entry_kind(self, dir_fd, name, shown, replace_symlink=False):
        """lstat of the destination: None if missing; refuse anything but a regular file with one
        link (or, with ``replace_symlink``, a symlink, which is then replaced, never followed)."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            if replace_symlink:
                return st
            raise WriteRefused(shown, "symlink", "%s is a symlink to %s; it is not followed or replaced"
                               % (shown, _link_target(dir_fd, name)))
        if not stat.S_ISREG(st.st_mode):
            raise WriteRefused(shown, "not-a-file", "%s exists and is not a regular file" % shown)
        if st.st_nlink > 1:
            raise WriteRefused(shown, "hard-link", "%s has %d hard links; replacing it would split it from its "
                               "other names, so it is left alone" % (shown, st.st_nlink))
        return st

    def _read_at(self, dir_fd, name, shown):
        """(content, permission bits, stat) of a regular file, or None if missing."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise WriteRefused(shown, "symlink", "%s is a symlink to %s; it is not followed"
                                   % (shown, _link_target(dir_fd, name)))
            if e.errno in (errno.ENXIO, errno.EISDIR):
                raise WriteRefused(shown, "not-a-file", "%s exists and is not a regular file" % shown)
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise WriteRefused(shown, "not-a-file", "%s exists and is not a regular file" % shown)
            return _read_all(fd), stat.S_IMODE(st.st_mode), st
        finally:
            os.close(fd)

    def _run(self, shown, operation):
        """Run ``operation`` with the account's identity, reporting OS errors as WriteRefused."""
        with self._identity():
            try:
                return operation()
            except OSError as e:
                raise _os_refusal(shown, e)

    # public operations --------------------------------------------------------------------------

    def file_state(self, parts):
        """(content, permission bits) of the file, or None if it (or a parent) is missing."""
        parts = _check_parts(parts)
        shown = display_path(parts)

        def operation():
            d = self._open_dir(parts[:-1], create=False)
            if d is None:
                return None
            try:
                found = self._read_at(d, parts[-1], shown)
            finally:
                os.close(d)
            return None if found is None else (found[0], found[1])
        return self._run(shown, operation)

    def existing(self, parts, replace_symlink=False):
        """What is at the destination now, refusing what ``write`` would refuse: None if missing
        (or a parent is), ``("file", content, permission bits)``, or, with ``replace_symlink``,
        ``("symlink", target, None)``."""
        parts = _check_parts(parts)
        shown = display_path(parts)

        def operation():
            d = self._open_dir(parts[:-1], create=False)
            if d is None:
                return None
            try:
                st = self._entry_kind(d, parts[-1], shown, replace_symlink)
                if st is None:
                    return None
                if stat.S_ISLNK(st.st_mode):
                    return ("symlink", os.readlink(parts[-1], dir_fd=d), None)
                found = self._read_at(d, parts[-1], shown)
                if found is None or (found[2].st_dev, found[2].st_ino) != (st.st_dev, st.st_ino):
                    raise WriteRefused(shown, "changed", "%s changed while it was being read" % shown)
                return ("file", found[0], found[1])
            finally:
                os.close(d)
        return self._run(shown, operation)

    def read(self, parts):
        """Content of the file, or None if it (or a parent) is missing."""
        state = self.file_state(parts)
        return None if state is None else state[0]

    def write(self, parts, data, mode, replace_symlink=False):
        """Atomically make the file hold ``data`` with ``mode``; True if anything changed.

        ``replace_symlink``: a symlink at the destination is replaced by the file (not followed)."""
        parts = _check_parts(parts)
        shown = display_path(parts)
        _check_mode(shown, mode)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes")
        data = bytes(data)
        name = parts[-1]

        def operation():
            d = self._open_dir(parts[:-1], create=True)
            try:
                st = self._entry_kind(d, name, shown, replace_symlink)
                if (st is not None and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
                        and st.st_size == len(data) and st.st_uid == self._uid):
                    found = self._read_at(d, name, shown)
                    if found is not None and found[0] == data and found[1] == mode \
                            and found[2].st_ino == st.st_ino:
                        return False
                self._replace(d, name, shown, data, mode, replace_symlink)
                return True
            finally:
                os.close(d)
        return self._run(shown, operation)

    def _replace(self, d, name, shown, data, mode, replace_symlink=False):
        for _attempt in range(_TEMP_ATTEMPTS):
            tmp = _temp_name()
            try:
                fd = os.open(tmp, _TEMP_FLAGS, 0o600, dir_fd=d)
                break
            except FileExistsError:
                continue    # a planted or colliding name: never opened, try another
            except OSError as e:
                refusal = _os_refusal(shown, e)
                refusal.message = "cannot create a file in %s: %s" % (shown.rsplit("/", 1)[0], refusal.message)
                raise refusal
        else:
            raise WriteRefused(shown, "temp-name", "could not create a fresh temporary file")
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.fchmod(fd, mode)
            self._own(fd)
            written = os.fstat(fd)
            # Checked again just before the rename: the destination must still not be a link or a
            # directory (a swap after this only means a link is replaced, never followed).
            self._entry_kind(d, name, shown, replace_symlink)
            os.rename(tmp, name, src_dir_fd=d, dst_dir_fd=d)
            tmp = None
            self._sync_dir(d)
            # The temporary name lives in a directory the user controls: if it was swapped for
            # something else before the rename, say so rather than report a file that is not there.
            now = os.stat(name, dir_fd=d, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (written.st_dev, written.st_ino):
                raise WriteRefused(shown, "changed", "%s was swapped for something else while it was being "
                                   "written; nothing outside the home was touched, run again" % shown)
        finally:
            os.close(fd)
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=d)
                except OSError:
                    pass

    def _own(self, fd):
        st = os.fstat(fd)
        if st.st_uid != self._uid or st.st_gid != self._gid:
            os.fchown(fd, self._uid, self._gid)

    def append_durable(self, parts, data, mode=0o600):
        """Append ``data`` and fsync it (the audit spool); creates parents and the file."""
        parts = _check_parts(parts)
        shown = display_path(parts)
        _check_mode(shown, mode)
        data = bytes(data)
        name = parts[-1]

        def operation():
            d = self._open_dir(parts[:-1], create=True)
            try:
                existed = self._entry_kind(d, name, shown) is not None
                try:
                    fd = os.open(name, _APPEND_FLAGS, mode, dir_fd=d)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        raise WriteRefused(shown, "symlink", "%s is a symlink; it is not followed" % shown)
                    if e.errno in (errno.ENXIO, errno.EISDIR):
                        raise WriteRefused(shown, "not-a-file", "%s exists and is not a regular file" % shown)
                    raise
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        raise WriteRefused(shown, "not-a-file", "%s exists and is not a regular file" % shown)
                    if stat.S_IMODE(st.st_mode) != mode:
                        os.fchmod(fd, mode)
                    self._own(fd)
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if not existed:
                    self._sync_dir(d)
            finally:
                os.close(d)
        self._run(shown, operation)

    def remove(self, parts, replace_symlink=False):
        """Remove the file; True if it existed. A symlink (unless ``replace_symlink``: the link
        itself is removed), a directory or a file with other hard links there is refused."""
        parts = _check_parts(parts)
        shown = display_path(parts)

        def operation():
            d = self._open_dir(parts[:-1], create=False)
            if d is None:
                return False
            try:
                if self._entry_kind(d, parts[-1], shown, replace_symlink) is None:
                    return False
                try:
                    os.unlink(parts[-1], dir_fd=d)
                except FileNotFoundError:
                    return False
                self._sync_dir(d)
                return True
            finally:
                os.close(d)
        return self._run(shown, operation)

    def ensure_dir(self, parts, mode=0o700):
        """Create the directory and missing parents (0700); the directory itself gets ``mode``."""
        parts = _check_parts(parts, directory=True)
        shown = display_path(parts)
        _check_mode(shown, mode)
        if parts == (".ssh",):
            mode = 0o700

        def operation():
            d = self._open_dir(parts, create=True, mode=0o700)
            try:
                if stat.S_IMODE(os.fstat(d).st_mode) != mode:
                    os.fchmod(d, mode)
            finally:
                os.close(d)
        self._run(shown, operation)


class _Identity:
    """Context manager: the account's identity (and umask 077) for the duration of a block."""

    def __init__(self, writer):
        self._writer = writer

    def __enter__(self):
        self._writer._enter_identity()

    def __exit__(self, *exc):
        self._writer._leave_identity()


def _link_target(dir_fd, name):
    try:
        return repr(os.readlink(name, dir_fd=dir_fd))
    except OSError:
        return "an unknown target"
