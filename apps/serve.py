"""A resident worker that keeps torch, the default model, MediaPipe's graphs and the numba kernels
warm, so that a second ``face3d reconstruct`` skips the ≈ 2.7 CPU s of start-up (issue 26).

The client half (:func:`run_in_worker`, :func:`start_worker`) imports only the standard library:
the CLI calls it before any heavy import. The worker half (:class:`Worker`) runs the CLI's own
in-process runner (``apps.cli.run``) for each request, in the client's working folder, with the
client's stdout/stderr relayed back and its exit code returned.

Where: a private folder ``face3d.paths.cache_dir()/serve-<uid>`` (mode 0700, owned by the user;
refused otherwise), holding per worker ``<key>.sock`` (mode 0600), ``<key>.lock`` (held while the
worker lives: one worker per key) and ``<key>.log`` (the worker's own stdout/stderr). ``key`` hashes
what makes a worker compatible (:func:`worker_key`): face3d's version, the interpreter, the source
tree (path, size and mtime of every file of the face3d, apps and renderers packages and of the
assets), and the environment variables that change results or threads. A worker of another key is
never used. Requests from other users are refused (``SO_PEERCRED``) besides the folder's mode.

Protocol: messages are a 4-byte big-endian length and a JSON object. The client sends ``{"op":
"run", "argv", "cwd", "prog", "tty", "columns"}``; the worker answers ``{"op": "accepted"}`` (or
``{"op": "busy"}``: one request at a time, the client then runs in-process), then any number of
``{"op": "out"|"err", "text"}`` and ``{"op": "alive"}`` (every :data:`HEARTBEAT_S`), and finally
``{"op": "exit", "code"}``. ``{"op": "status"}`` and ``{"op": "stop"}`` are answered at once.

Settings: ``FACE3D_SERVE=0`` never uses nor starts a worker; ``FACE3D_SERVE_IDLE`` the idle
timeout in seconds of an auto-started worker (default :data:`DEFAULT_IDLE_S`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

#: Commands the client hands to a worker (the others start quickly in-process).
SERVED_COMMANDS = ("reconstruct", "animate")
DEFAULT_IDLE_S = 600.0
#: Environment variables (by prefix) in the worker key; FACE3D_SERVE* are the client's own settings.
KEY_ENV_PREFIXES = ("FACE3D_", "OMP_", "MKL_", "OPENBLAS_", "NUMBA_", "KMP_", "PYTORCH_", "CUDA_VISIBLE_DEVICES",
                    "GLOG_", "TF_CPP_", "PATH", "TMPDIR")  # PATH: the external tools found (espeak-ng, ffmpeg)
KEY_ENV_IGNORED = ("FACE3D_SERVE", "FACE3D_SERVE_IDLE")
MAX_MESSAGE = 16 << 20
ACCEPT_TIMEOUT_S = 5.0  # the worker answers accepted/busy within this (its accept thread does, even mid-request)
HEARTBEAT_S = 2.0
#: An idle worker hands freed memory back to the OS after this long (≈ 1.0 -> 0.7 GB); not after each
#: request: re-faulting the pages cost the next request ≈ 0.4 CPU s (2.78 against 2.36 s, 8 runs each).
TRIM_AFTER_S = 60.0
SILENCE_TIMEOUT_S = 30.0  # no message (not even a heartbeat) for this long: the worker is wedged, run in-process
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, one for the NUL


class ProtocolError(Exception):
    """A garbled, truncated or oversized message."""


def enabled() -> bool:
    """Whether the CLI may use and start workers (``FACE3D_SERVE`` not 0/false/no/off; Unix only)."""
    flag = os.environ.get("FACE3D_SERVE", "1").strip().lower()
    return flag not in ("0", "false", "no", "off") and os.name == "posix" and hasattr(socket, "AF_UNIX")


def idle_timeout_setting() -> float:
    """``FACE3D_SERVE_IDLE`` seconds (default :data:`DEFAULT_IDLE_S`; unreadable values give the default)."""
    try:
        return max(0.0, float(os.environ.get("FACE3D_SERVE_IDLE", DEFAULT_IDLE_S)))
    except ValueError:
        return DEFAULT_IDLE_S


def served(argv: list[str]) -> bool:
    """Whether ``argv`` is a command the client hands to a worker (not its ``--help``)."""
    return bool(argv) and argv[0] in SERVED_COMMANDS and "--help" not in argv


# ---------------------------------------------------------------- the key and the folder

def _source_roots() -> list[Path]:
    """The folders whose files make up the running face3d: the package, and in a source checkout the
    ``apps/``, ``renderers/`` and ``assets/`` folders beside it and ``pyproject.toml``."""
    import face3d

    pkg = Path(face3d.__file__).resolve().parent
    roots = [pkg, Path(__file__).resolve().parent]
    top = pkg.parent
    if (top / "pyproject.toml").is_file():
        roots += [top / "renderers", top / "assets", top / "pyproject.toml"]
    return sorted(set(roots))


def _tree_state(root: Path, h: Any) -> None:
    """Feed path, size and mtime of every file under ``root`` (no __pycache__, no hidden files) to ``h``."""
    if root.is_file():
        st = root.stat()
        h.update(f"{root}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") or e.name == "__pycache__" or e.name.endswith(".pyc"):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                try:
                    st = e.stat()
                except OSError:
                    continue
                h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def worker_key(env: dict[str, str] | None = None) -> str:
    """Hex digest naming the workers this process may use: face3d's version, the interpreter, the
    source tree's state (:func:`_source_roots`) and the relevant environment (:data:`KEY_ENV_PREFIXES`)."""
    import face3d

    env = dict(os.environ if env is None else env)
    h = hashlib.sha256()
    exe = os.path.realpath(sys.executable)  # bin/python and bin/python3 of one venv are one interpreter
    h.update(f"{face3d.__version__}\0{exe}\0{sys.version}\0{sys.prefix}\n".encode())
    for root in _source_roots():
        _tree_state(root, h)
    for k in sorted(env):
        if k.startswith(KEY_ENV_PREFIXES) and k not in KEY_ENV_IGNORED:
            h.update(f"{k}={env[k]}\n".encode())
    return h.hexdigest()[:20]


def serve_dir(create: bool = True) -> Path | None:
    """The private folder of this user's workers (``cache_dir()/serve-<uid>``, mode 0700), or None when
    it cannot be made private (another owner, a symlink, group/other access)."""
    import stat

    from face3d.paths import cache_dir

    d = cache_dir() / f"serve-{os.getuid()}"
    if create:
        try:
            d.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        st = os.lstat(d)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return d


def socket_path(key: str | None = None, create: bool = True) -> Path | None:
    """The socket of the worker for ``key`` (default: this process's :func:`worker_key`), or None when
    the folder is not private or the path is too long for a Unix socket (then no worker is used)."""
    d = serve_dir(create)
    if d is None:
        return None
    p = d / f"{key or worker_key()}.sock"
    return p if len(os.fsencode(str(p))) <= SUN_PATH_MAX else None


# ---------------------------------------------------------------- messages

def send_msg(sock: socket.socket, obj: dict[str, Any]) -> None:
    """Send one length-prefixed JSON message."""
    data = json.dumps(obj).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> dict[str, Any] | None:
    """One message, or None on a clean end of stream; ProtocolError when truncated, oversized or not
    a JSON object. Socket timeouts propagate (``TimeoutError``)."""
    head = _recv_exact(sock, 4)
    if not head:
        return None
    if len(head) < 4:
        raise ProtocolError("truncated message header")
    (n,) = struct.unpack(">I", head)
    if n > MAX_MESSAGE:
        raise ProtocolError(f"message of {n} bytes (limit {MAX_MESSAGE})")
    body = _recv_exact(sock, n)
    if len(body) < n:
        raise ProtocolError("truncated message")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    return obj


def _connect(path: Path, timeout: float) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:  # no file, ECONNREFUSED (a dead worker's socket file), a timeout
        s.close()
        return None
    return s


def request(path: Path, obj: dict[str, Any], timeout: float = ACCEPT_TIMEOUT_S) -> dict[str, Any] | None:
    """One control message (status, stop) and its answer, or None when no worker answered."""
    s = _connect(path, timeout)
    if s is None:
        return None
    try:
        send_msg(s, obj)
        return recv_msg(s)
    except (OSError, ProtocolError):
        return None
    finally:
        s.close()


# ---------------------------------------------------------------- the client

def _prog_name() -> str:
    """The program name click would show in usage lines ('face3d', or 'python -m face3d.apps.cli')."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name not in (None, "__main__"):
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "face3d"


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed pipe on our side: nothing more to do
        pass


class WorkerGone(Exception):
    """The worker accepted a request and then stopped answering (died, wedged, garbled)."""


def run_in_worker(argv: list[str], key: str | None = None) -> int | None:
    """Hand ``argv`` to a live compatible worker and relay its output; its exit code, or None when
    no worker took the request (none running, a dead socket file, busy, refused, garbled): then the
    caller runs it in-process. A worker that stops mid-request also gives None, after a note on
    stderr. Ctrl-C closes the connection (the worker cancels the request) and returns 130."""
    path = socket_path(key)
    if path is None or not os.path.exists(path):
        return None
    s = _connect(path, ACCEPT_TIMEOUT_S)
    if s is None:
        return None
    try:
        try:
            cols = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError, AttributeError):
            cols = 0
        try:
            send_msg(s, {"op": "run", "argv": list(argv), "cwd": os.getcwd(), "prog": _prog_name(), "columns": cols,
                         "tty": [_isatty(sys.stdout), _isatty(sys.stderr)]})
            first = recv_msg(s)
        except (OSError, ProtocolError):
            return None
        if not first or first.get("op") != "accepted":
            return None  # busy, or not a worker
        try:
            return _relay(s)
        except WorkerGone as exc:
            _write(sys.stderr, f"face3d: the resident worker stopped answering ({exc}); running here instead\n")
            return None
    except KeyboardInterrupt:
        _write(sys.stderr, "interrupted\n")
        return 130
    finally:
        s.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _relay(s: socket.socket) -> int:
    s.settimeout(SILENCE_TIMEOUT_S)
    while True:
        try:
            msg = recv_msg(s)
        except (OSError, ProtocolError) as exc:  # TimeoutError is an OSError
            raise WorkerGone(str(exc) or type(exc).__name__) from None
        if msg is None:
            raise WorkerGone("connection closed before the exit code")
        op = msg.get("op")
        if op == "out":
            _write(sys.stdout, str(msg.get("text", "")))
        elif op == "err":
            _write(sys.stderr, str(msg.get("text", "")))
        elif op == "exit":
            code = msg.get("code")
            return code if isinstance(code, int) else 1


def start_worker(idle_timeout: float | None = None) -> Any:
    """Start a detached worker for this process's key (a new session, stdin from /dev/null, output to
    its log file in the serve folder: it never holds the caller's pipes open); the Popen, or None when
    disabled or the folder is not private. A worker already holding the key's lock exits at once."""
    import subprocess

    if not enabled():
        return None
    key = worker_key()
    path = socket_path(key)
    if path is None:
        return None
    prune(path.parent)
    log_path = path.with_suffix(".log")
    try:
        mode = "ab" if log_path.exists() and log_path.stat().st_size < (1 << 20) else "wb"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC), 0o600)
    except OSError:
        return None
    import face3d

    root = str(Path(face3d.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    idle = idle_timeout_setting() if idle_timeout is None else idle_timeout
    try:
        with os.fdopen(fd, mode) as log:
            return subprocess.Popen([sys.executable, "-m", "face3d.apps.cli", "serve", "--idle-timeout", str(idle)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(path.parent), env=env,
                                    start_new_session=True, close_fds=True)
    except OSError:
        return None


def worker_running(key: str | None = None) -> bool:
    """Whether a worker for ``key`` (default: this process's) is alive, serving or still warming up:
    it holds the key's lock file."""
    import fcntl

    path = socket_path(key, create=False)
    if path is None:
        return False
    try:
        fd = os.open(path.with_suffix(".lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


STALE_S = 86400.0


def prune(folder: Path, older_than_s: float = STALE_S) -> list[str]:
    """Remove the lock, log and socket files of workers that no longer run (their lock is free) and
    whose lock file is older than ``older_than_s``; the keys removed."""
    gone = []
    now = time.time()
    for lock in folder.glob("*.lock"):
        try:
            if now - lock.stat().st_mtime < older_than_s or worker_running(lock.stem):
                continue
            for suffix in (".sock", ".log", ".lock"):
                lock.with_suffix(suffix).unlink(missing_ok=True)
        except OSError:
            continue
        gone.append(lock.stem)
    return gone


def lock_holder(key: str) -> int | None:
    """The pid of the live worker holding ``key``'s lock (also while it warms up), else None."""
    path = socket_path(key, create=False)
    if path is None or not worker_running(key):
        return None
    try:
        return int(path.with_suffix(".lock").read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def workers() -> list[tuple[Path, dict[str, Any] | None]]:
    """Every socket in this user's serve folder and its worker's status (None: nobody answers)."""
    d = serve_dir(create=False)
    if d is None:
        return []
    return [(p, request(p, {"op": "status"})) for p in sorted(d.glob("*.sock"))]


def stop_all() -> list[str]:
    """Stop every worker of this user in this cache folder (a stop message; SIGTERM to one still
    warming up) and remove dead workers' socket files; one line per action."""
    import signal

    d = serve_dir(create=False)
    if d is None:
        return []
    done = []
    for path, info in workers():
        if info is None:
            path.unlink(missing_ok=True)
            done.append(f"removed {path.name}: no worker answered (a dead worker's socket file)")
        elif request(path, {"op": "stop"}) is not None:
            done.append(f"stopped worker {info.get('pid')} ({path.stem})")
    for lock in sorted(d.glob("*.lock")):
        pid = lock_holder(lock.stem)
        if pid is not None and not any(lock.stem in line for line in done):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
                done.append(f"stopped worker {pid} ({lock.stem}, warming up)")
    return done


# ---------------------------------------------------------------- the worker

class _RelayStream:
    """A text stream whose writes go to the client as ``out``/``err`` messages (discarded once the
    client is gone)."""

    def __init__(self, worker: Worker, conn: socket.socket, op: str, tty: bool) -> None:
        self.worker, self.conn, self.op, self.tty = worker, conn, op, tty
        self.encoding, self.errors = "utf-8", "replace"

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for binary streams with write(b"")
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self.worker.send(self.conn, {"op": self.op, "text": text})
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    def fileno(self) -> int:
        import io

        raise io.UnsupportedOperation("a relayed stream has no file descriptor")


class Worker:
    """Serves requests on ``path`` until idle for ``idle_timeout`` seconds (0: never) or stopped."""

    def __init__(self, path: Path, key: str, idle_timeout: float, runner: Any) -> None:
        import queue
        import threading

        self.path, self.key, self.idle_timeout, self.runner = path, key, idle_timeout, runner
        self.queue: queue.Queue[tuple[socket.socket, dict[str, Any]] | None] = queue.Queue()
        self.busy = False
        self.stopping = False
        self.cancelled = False
        self.requests = 0
        self.counted = False  # the request being served is already in ``requests``
        self.started = time.time()
        self.last_done = time.monotonic()
        self.state_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.gone: set[int] = set()  # ids of connections whose client went away
        self.listener: socket.socket | None = None
        self.inode = 0

    # -- transport
    def send(self, conn: socket.socket, obj: dict[str, Any]) -> None:
        with self.send_lock:
            if id(conn) in self.gone:
                return
            try:
                send_msg(conn, obj)
            except OSError:
                self.gone.add(id(conn))

    def bind(self) -> None:
        """Listen on :attr:`path` (replacing a dead worker's socket file), mode 0600."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        s.listen(8)
        s.settimeout(0.5)
        self.listener, self.inode = s, os.stat(self.path).st_ino

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            try:
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass

    def status(self) -> dict[str, Any]:
        import face3d

        return {"op": "status", "pid": os.getpid(), "key": self.key, "version": face3d.__version__, "python": sys.executable,
                "started": self.started, "requests": self.requests, "busy": self.busy, "idle_timeout": self.idle_timeout,
                "idle_s": 0.0 if self.busy else time.monotonic() - self.last_done, "rss_mb": rss_mb(), "cpu_s": cpu_s()}

    # -- the accept thread
    def accept_loop(self) -> None:
        assert self.listener is not None
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping:
                    return
                time.sleep(0.1)
                continue
            try:
                self._triage(conn)
            except Exception as exc:  # a garbled or hostile client must not stop the worker
                log(f"dropped a connection: {exc!r}")
                conn.close()

    def _triage(self, conn: socket.socket) -> None:
        if not same_user(conn):
            log("refused a connection from another user")
            conn.close()
            return
        conn.settimeout(ACCEPT_TIMEOUT_S)
        req = recv_msg(conn)
        op = (req or {}).get("op")
        if op == "status":
            send_msg(conn, self.status())
            conn.close()
        elif op == "stop":
            send_msg(conn, {"op": "stopping", "pid": os.getpid()})
            conn.close()
            self.stopping = True
            self.queue.put(None)
        elif op == "run" and isinstance(req, dict) and _valid_run(req):
            with self.state_lock:
                take = not self.busy and not self.stopping
                if take:
                    self.busy = True
            if not take:
                send_msg(conn, {"op": "busy"})
                conn.close()
                return
            conn.settimeout(None)
            send_msg(conn, {"op": "accepted", "pid": os.getpid()})
            self.queue.put((conn, req))
        else:
            send_msg(conn, {"op": "error", "text": "unknown or malformed request"})
            conn.close()

    # -- the main thread
    def serve(self) -> None:
        """Serve until idle, stopped, or interrupted (Ctrl-C of a foreground ``face3d serve``, SIGTERM)."""
        import queue
        import threading

        threading.Thread(target=self.accept_loop, name="face3d-serve-accept", daemon=True).start()
        trimmed = False
        try:
            while not self.stopping:
                idle = time.monotonic() - self.last_done
                if self.idle_timeout > 0:
                    left = self.idle_timeout - idle
                    if left <= 0:
                        log(f"idle for {self.idle_timeout:g} s: exiting")
                        break
                else:
                    left = 3600.0
                if not trimmed and idle >= TRIM_AFTER_S:
                    release_memory()
                    trimmed = True
                    log(f"idle: freed memory, {rss_mb():.0f} MB resident")
                try:
                    item = self.queue.get(timeout=min(left, 3600.0, TRIM_AFTER_S - idle if not trimmed else 3600.0))
                except queue.Empty:
                    continue
                except KeyboardInterrupt:
                    if self.cancelled and not self.stopping:  # a cancel that arrived after its request ended
                        continue
                    raise
                if item is None:
                    break
                self.serve_one(*item)
                trimmed = False
        finally:
            self.stopping = True
            self.close()

    def serve_one(self, conn: socket.socket, req: dict[str, Any]) -> None:
        """:meth:`handle` one request; whatever happens, the process state is restored and the
        worker is free again. A cancel (the client went away) ends only the request."""
        saved = (sys.stdout, sys.stderr, sys.argv, os.environ.get("COLUMNS"), os.getcwd())
        t0 = time.perf_counter()
        code: int | None = None
        try:
            code = self.handle(conn, req)
            if self.cancelled:  # the CLI's runner turned the cancel into exit code 130
                self.stopping = True
        except KeyboardInterrupt:
            # Ctrl-C/SIGTERM of the worker, or a cancel: an interrupted import or kernel compile may
            # leave this process half-initialised, so the worker ends; the next run starts a fresh one.
            self.stopping = True
        finally:
            for _ in range(3):  # a cancel raised while restoring is delivered at most once: retry
                try:
                    self._restore(saved, conn)
                    break
                except KeyboardInterrupt:
                    continue
            log(f"request {self.requests}: {' '.join(req['argv'])[:200]} -> "
                f"{'cancelled' if code is None else code} in {time.perf_counter() - t0:.2f} s")


    def _restore(self, saved: tuple[Any, ...], conn: socket.socket) -> None:
        sys.stdout, sys.stderr, sys.argv = saved[0], saved[1], saved[2]
        if saved[3] is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved[3]
        with contextlib.suppress(OSError):
            os.chdir(saved[4])
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        self.gone.discard(id(conn))
        if self.busy and not self.counted:  # a request that ended without an exit code (cancelled)
            self.requests += 1
        self.counted = False
        self.last_done = time.monotonic()
        with self.state_lock:
            self.busy = False

    def handle(self, conn: socket.socket, req: dict[str, Any]) -> int:
        """Run one request with the client's cwd, argv and relayed streams; send and return its exit code."""
        import _thread
        import threading
        import traceback
        import warnings

        done = threading.Event()

        def watch() -> None:  # the client sends nothing more: any return of recv means it went away
            try:
                conn.recv(1)
            except OSError:
                pass
            with self.state_lock:
                if not done.is_set():
                    self.cancelled = True
                    self.gone.add(id(conn))
                    _thread.interrupt_main()

        def beat() -> None:
            while not done.wait(HEARTBEAT_S):
                self.send(conn, {"op": "alive"})

        tty = req.get("tty") or [False, False]
        prog = str(req.get("prog") or "face3d")
        threading.Thread(target=watch, daemon=True).start()
        threading.Thread(target=beat, daemon=True).start()
        try:
            try:
                os.chdir(req["cwd"])
                sys.stdout = _RelayStream(self, conn, "out", bool(tty[0]))  # type: ignore[assignment]
                sys.stderr = _RelayStream(self, conn, "err", bool(tty[1]))  # type: ignore[assignment]
                sys.argv = [prog, *req["argv"]]
                if req.get("columns"):
                    os.environ["COLUMNS"] = str(req["columns"])
                with warnings.catch_warnings():  # fresh filters: a warning shows again, as in a new process
                    code = int(self.runner(list(req["argv"]), prog_name=prog))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except OSError as exc:  # os.chdir: the client's folder vanished
                sys.stderr.write(f"error: {exc}\n")
                code = 2
            except Exception:
                traceback.print_exc()  # what an in-process run prints on an internal error
                code = 1
        finally:
            with self.state_lock:
                done.set()
        self.requests += 1  # counted before the client hears the exit code: its next status call sees it
        self.counted = True
        self.send(conn, {"op": "exit", "code": code})
        return code


def _valid_run(req: dict[str, Any]) -> bool:
    argv, cwd = req.get("argv"), req.get("cwd")
    return (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and served(argv)
            and isinstance(cwd, str) and os.path.isabs(cwd))


def same_user(conn: socket.socket) -> bool:
    """Whether the peer of ``conn`` runs as this user (``SO_PEERCRED``; True where the OS has no such
    option: the 0700 folder is then the only guard)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def cpu_s() -> float:
    """CPU seconds (user + sys) this process has used."""
    t = os.times()
    return t.user + t.system


def rss_mb() -> float:
    """This process's resident memory in MB (``/proc/self/status``; else the peak from getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so an idle
    worker holds what it keeps warm, not the last request's peak."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def log(text: str) -> None:
    """A time-stamped line on the worker's own stderr (its log file when detached)."""
    stream: BinaryIO | Any = sys.__stderr__
    if stream is not None:
        _write(stream, f"{time.strftime('%Y-%m-%d %H:%M:%S')} face3d serve [{os.getpid()}]: {text}\n")


def warm_up() -> float:
    """Reconstruct the bundled demo photo once (default model and settings): imports torch and the
    pipeline, loads the model, creates MediaPipe's graphs, loads the numba kernels and the texture
    stage's caches. Returns the seconds it took; a failure is logged and leaves the worker serving."""
    import tempfile

    t0 = time.perf_counter()
    try:
        from face3d.io.images import write_demo_image
        from face3d.reconstruction import reconstruct

        with tempfile.TemporaryDirectory(prefix="face3d-serve-") as d:
            reconstruct(str(write_demo_image(Path(d) / "demo.png")))
    except Exception as exc:
        log(f"warm-up failed ({exc!r}); serving cold")
    return time.perf_counter() - t0


def serve_forever(idle_timeout: float, warm: bool = True) -> int:
    """``face3d serve``: take this key's lock, warm up, listen, serve; 0 when it ends, 2 when the
    folder is not private or another worker holds the lock."""
    import fcntl
    import signal

    from face3d.errors import BadInputError

    from .cli import run

    key = worker_key()
    path = socket_path(key)
    if path is None:
        raise BadInputError(f"cannot serve: {serve_dir(create=False) or 'the serve folder'} is not a private (0700) folder of "
                            "this user, or its path is too long for a Unix socket (set FACE3D_CACHE to a shorter path)")
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise BadInputError(f"a worker for this face3d already runs ({path}); `face3d serve --status` shows it") from None
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())  # for `face3d serve --stop` while warming up
    try:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        # a cancelled request is interrupted by _thread.interrupt_main(), which does nothing while SIGINT is
        # ignored, as it is in a worker started from a script's background job (`cmd &` inherits SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        t = warm_up() if warm else 0.0
        worker = Worker(path, key, idle_timeout, run)
        worker.bind()

        def stop(signum: int, frame: Any) -> None:  # ends a running request like Ctrl-C, then the worker
            worker.stopping = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        log(f"serving {path} (warm-up {t:.1f} s, {rss_mb():.0f} MB resident, idle timeout "
            f"{'none' if idle_timeout <= 0 else f'{idle_timeout:g} s'})")
        try:
            worker.serve()
        except KeyboardInterrupt:
            log("interrupted: exiting")
        return 0
    finally:
        os.close(lock)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)
