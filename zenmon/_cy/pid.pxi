# Pid: the identity of a process, local or remote.


@cython.final
@cython.no_gc
@cython.freelist(256)
cdef class Pid:
    """Identity of a zenmon process: node address, node incarnation, process id.

    Hashable, ordered, picklable; ``str(pid)`` is ``<id.incarnation@node>`` and
    ``Pid.parse(str(pid)) == pid``. A pid names its node (and, with CURVE, the
    node's public key inside the address), so it can be monitored from anywhere.
    """

    __zenmon_pid__ = True

    def __init__(self, str node not None, uint64_t incarnation, uint64_t id):
        if self.node is not None:
            # a pid is a dict key and a set member: it must never change once made
            raise TypeError("zenmon.Pid is immutable")
        self.node = node
        self.incarnation = incarnation
        self.id = id

    @staticmethod
    cdef Pid new(str node, uint64_t incarnation, uint64_t id):
        cdef Pid pid = Pid.__new__(Pid)
        pid.node = node
        pid.incarnation = incarnation
        pid.id = id
        return pid

    def __hash__(self):
        return hash((self.node, self.incarnation, self.id))

    def __richcmp__(self, other, int op):
        if not isinstance(other, Pid):
            return NotImplemented
        cdef Pid o = <Pid>other
        if op == 2:
            return self.id == o.id and self.incarnation == o.incarnation and self.node == o.node
        if op == 3:
            return not (self.id == o.id and self.incarnation == o.incarnation
                        and self.node == o.node)
        a = (self.node, self.incarnation, self.id)
        b = (o.node, o.incarnation, o.id)
        if op == 0:
            return a < b
        if op == 1:
            return a <= b
        if op == 4:
            return a > b
        return a >= b

    def __reduce__(self):
        return (Pid, (self.node, self.incarnation, self.id))

    def __str__(self):
        return f"<{self.id}.{self.incarnation}@{self.node}>"

    def __repr__(self):
        return f"Pid('{self}')"

    @staticmethod
    def parse(str text not None):
        """Parse ``<id.incarnation@node>`` (the form ``str(pid)`` gives)."""
        if not (text.startswith("<") and text.endswith(">")) or "@" not in text:
            raise ValueError(f"not a zenmon pid: {text!r}")
        head, _, node = text[1:len(text) - 1].partition("@")
        ident, dot, incarnation = head.partition(".")
        if not dot or not node or not ident.isdigit() or not incarnation.isdigit():
            raise ValueError(f"not a zenmon pid: {text!r}")
        return Pid(node, int(incarnation), int(ident))
