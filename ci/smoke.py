"""Import-and-smoke check for an installed zenmon wheel.

cibuildwheel runs this (``test-command`` in pyproject.toml) against each wheel it
builds, from outside the source tree: it proves the compiled core imports and that
one monitor round trip works on a real node. It needs nothing but the wheel's own
dependencies. Exit status 0 means the wheel is usable.
"""

import faulthandler
import sys

# A wedged I/O thread must fail the wheel, not hang the build machine.
faulthandler.dump_traceback_later(60, exit=True)

import zenmon  # noqa: E402
import zenmon._core  # noqa: E402

core_path = zenmon._core.__file__ or ""
if not core_path.endswith((".so", ".pyd")):
    sys.exit(f"zenmon._core is not a compiled extension: {core_path!r}")

with zenmon.Node(listen="tcp://127.0.0.1:0") as node:
    watcher = node.process()
    target = node.process()
    ref = watcher.monitor(target.pid)
    target.exit("smoke")
    down = watcher.receive(timeout=10)
    if down != zenmon.Down(ref, target.pid, "smoke"):
        sys.exit(f"unexpected message: {down!r}")

    # A monitor on a process that is already dead fires at once with "noproc".
    late_ref = watcher.monitor(target.pid)
    down = watcher.receive(timeout=10)
    if down != zenmon.Down(late_ref, target.pid, "noproc"):
        sys.exit(f"unexpected message: {down!r}")
    watcher.exit()

if zenmon.Pid.parse(str(target.pid)) != target.pid:
    sys.exit("Pid does not round-trip through str()")

faulthandler.cancel_dump_traceback_later()
print(f"zenmon smoke OK: {zenmon.__file__} ({core_path}), {sys.version.split()[0]}")
