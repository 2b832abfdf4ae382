"""zenmon's own exceptions."""


class ZenmonError(Exception):
    """Base class of the errors zenmon raises itself."""


class ProcessExited(ZenmonError):
    """The process has exited: it can no longer monitor, and its inbox is drained."""


class NameTaken(ZenmonError, ValueError):
    """A process is already registered under this name on this node."""


class NotStarted(ZenmonError):
    """The node has not been started (or has been stopped)."""
