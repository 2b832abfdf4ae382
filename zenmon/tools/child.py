"""Node subprocesses driven by JSON lines: the one command loop and its parent side.

``zenmon demo``, ``zenmon bench`` and the remote test suites all run zenmon (or
baseline) nodes in OS processes of their own, spoken to the same way:

- The child (:func:`serve_commands`) prints one JSON line describing itself
  (``{"address", "incarnation", "pid", ...}``), then answers each command line on
  stdin (``{"cmd": name, **args}``) with one line on stdout: ``{"ok": result}`` or
  ``{"error": text, "traceback": text}``; a failing command never ends it. ``stop``
  or the end of stdin (the parent went away) stops the node and ends the loop.
- The parent holds a :class:`Child`: it starts ``python -c`` with the parent's own
  ``sys.path`` and calls ``main(argv)`` of the child's module, reads every line with
  a deadline (a reader thread feeds a queue, so a hung child fails the caller
  instead of hanging it), and kills the child by its own pid.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["Child", "ChildError", "die_with_parent", "serve_commands"]


# --------------------------------------------------------------------------
# The child side
# --------------------------------------------------------------------------


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc/prctl: stdin EOF still ends us
        pass


def serve_commands(node: Any, server: Any, info: dict[str, Any],
                   stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Print `info`, then run command ``name`` as ``server.do_<name>(**args)`` for each
    line on `stdin` until ``stop`` or EOF; `node` is stopped either way (``stop`` calls
    ``server.do_stop()`` if the server has one, else ``node.stop()``). -> exit code 0."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    out.write(json.dumps(info) + "\n")
    out.flush()
    try:
        for line in stdin:
            if not line.strip():
                continue
            stop = False
            try:
                command = json.loads(line)
                if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
                    raise ValueError("a command is a JSON object with a 'cmd' string")
                name = command.pop("cmd")
                if name == "stop":
                    stop = True
                    handler = getattr(server, "do_stop", None) or node.stop
                else:
                    handler = getattr(server, f"do_{name}", None)
                    if handler is None:
                        raise ValueError(f"unknown command {name!r}")
                answer: dict[str, Any] = {"ok": handler(**command)}
            except Exception as exc:  # answer the error; keep serving
                answer = {"error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc(limit=5)}
            out.write(json.dumps(answer, default=repr) + "\n")
            out.flush()
            if stop:
                break
    finally:
        node.stop()
    return 0


# --------------------------------------------------------------------------
# The parent side
# --------------------------------------------------------------------------


class ChildError(RuntimeError):
    """A child node answered an error, died, or did not answer in time."""


class Child:
    """One node subprocess running ``module.main(argv)`` (which calls :func:`serve_commands`).

    ``name`` labels error messages. With ``hello=True`` (default) the constructor
    waits for the child's first line (``start_timeout``) and fills :attr:`info`,
    :attr:`address` and :attr:`incarnation`; with ``hello=False`` call :meth:`hello`
    later (to start several children in parallel). ``new_session`` puts the child in
    a session of its own (a terminal's Ctrl-C is then for the parent only);
    ``prefix`` goes before the interpreter on the command line (for example
    ``["ip", "netns", "exec", NAME]``: a command that execs the rest in place, so
    the pid stays the child's). ``capture_stderr`` keeps the child's stderr in a
    temporary file for error
    messages (:meth:`stderr_text`) instead of sharing the parent's. :meth:`call` is
    safe from several threads; :meth:`send` and :meth:`reply` are its two halves,
    to have several children work at once. :meth:`kill` SIGKILLs the child by its
    own pid and reaps it; :meth:`close` does that (after a polite ``stop`` if asked)
    and releases the pipes.
    """

    #: The exception type raised for errors (subclasses may narrow it).
    error: type[Exception] = ChildError

    def __init__(self, module: str, argv: Sequence[str] = (), *, name: str = "child",
                 start_timeout: float = 60.0, call_timeout: float = 600.0,
                 hello: bool = True, new_session: bool = False,
                 capture_stderr: bool = False, cwd: str | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.info: dict[str, Any] = {}
        self.address = ""
        self.incarnation = 0
        # The child gets exactly our sys.path: with -m or -c it would otherwise put
        # the working directory first, and a source tree there (no built _core)
        # would shadow the installed package. The module name stays visible in the
        # child's command line.
        code = (
            "import sys\n"
            f"sys.path[:] = {[p for p in sys.path if p]!r}\n"
            "from importlib import import_module\n"
            f"sys.exit(import_module({module!r}).main(sys.argv[1:]))\n"
        )
        self._stderr: IO[bytes] | None = tempfile.TemporaryFile() if capture_stderr else None
        self.popen = subprocess.Popen(
            [*prefix, sys.executable, "-c", code, *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            cwd=tempfile.gettempdir() if cwd is None else cwd,
            text=True, bufsize=1, start_new_session=new_session,
        )
        self.pid: int = self.popen.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._call_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True,
                         name=f"{name} reader {self.pid}").start()
        if hello:
            try:
                self.hello()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.address or '-'} pid={self.pid}>"

    # ------------------------------------------------------------ plumbing

    def _read(self) -> None:
        stdout = self.popen.stdout
        assert stdout is not None
        try:
            for line in stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def stderr_text(self) -> str:
        """The end of what the child wrote on stderr (captured children only)."""
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")[-4000:]
        except (OSError, ValueError):
            return ""

    def _fail(self, text: str) -> Exception:
        stderr = self.stderr_text()
        return self.error(f"{self.name} pid {self.pid}: {text}"
                          + (f"; stderr: {stderr}" if stderr else ""))

    def _line(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise self._fail(f"no answer within {timeout:g} s for {what}") from None
        if line is None:
            self._lines.put(None)   # every later read fails the same way
            raise self._fail(f"exited (status {self.popen.poll()}) waiting for {what}")
        return line

    def hello(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the child's first line -> its info (also kept in :attr:`info`)."""
        info = json.loads(self._line(self.start_timeout if timeout is None else timeout,
                                     "the start-up line"))
        if int(info.get("pid", self.pid)) != self.pid:
            raise self._fail(f"start-up line names pid {info['pid']}")
        self.info = info
        self.address = str(info.get("address", ""))
        self.incarnation = int(info.get("incarnation", 0))
        return info

    def send(self, cmd: str, **args: Any) -> None:
        """Send a command without waiting for its answer (see :meth:`reply`)."""
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise self._fail(f"is gone ({exc})") from None

    def reply(self, timeout: float | None = None, what: str = "a command") -> Any:
        """The next answer's result; an error answer raises :attr:`error`."""
        answer = json.loads(self._line(self.call_timeout if timeout is None else timeout,
                                       what))
        if "error" in answer:
            detail = answer.get("traceback", "")
            raise self.error(f"{self.name} pid {self.pid}: {what}: {answer['error']}"
                             + (f"\n{detail}" if detail else ""))
        return answer["ok"]

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send one command and return its result (thread-safe)."""
        with self._call_lock:
            self.send(cmd, **args)
            return self.reply(timeout, repr(cmd))

    # ------------------------------------------------------------ lifetime

    @property
    def running(self) -> bool:
        """True until the child has exited (and been reaped)."""
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to this child by its own pid, if it still runs."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self, wait: float = 10.0) -> None:
        """SIGKILL this child (SIGCONT first, in case it was stopped) and reap it."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(wait)
        except subprocess.TimeoutExpired:   # unkillable (D state?): still `running`
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop its node and exit; wait for it."""
        self.call("stop", timeout=timeout)
        self.popen.wait(timeout)

    def close(self, graceful: bool = False) -> None:
        """Kill (after a polite :meth:`stop` if `graceful`) and release the pipes."""
        try:
            if graceful and self.popen.poll() is None:
                try:
                    self.stop()
                except (ChildError, self.error, OSError, ValueError,
                        subprocess.TimeoutExpired):
                    pass
            self.kill()
        finally:
            for stream in (self.popen.stdin, self.popen.stdout, self._stderr):
                try:
                    if stream is not None:
                        stream.close()
                except (OSError, ValueError):
                    pass
