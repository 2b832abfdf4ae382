# Links: functions over a Core's tables (Cython cannot include methods into a class,
# so these take the Core as first argument; the Python layer is zenmon/links.py).
#
# A link is kept as the *watching halves* of its two ends: a monitor record flagged
# FLAG_LINK on each linked process of this node, in the same targets table as the
# monitors (so one subscription, one death certificate, one nodedown sweep and one
# dispatcher queue serve both). When the watched end dies the record fires like a
# DOWN, and the dispatcher turns it into an exit signal (``hand_link``): an Exit
# message for a process that traps exits, else the process is killed with the
# reason (kept in ``link_kills`` for the Python layer), except for "normal".
#
# The three places a link's other end can be:
# - conn 0: a process of this node (a local link is two records, one per end);
# - conn c in 1 .. PEER_CONN-1: a remote process, linked from here through
#   connector c ("our" link): its record watches the remote pid like a monitor,
#   and LINK / UNLINK / EXIT ops for the remote end ride that connector's
#   SUBSCRIBE batches (link_queues), in order;
# - conn PEER_CONN | p: a remote process that linked to ours through proxy peer p
#   ("their" link): its record watches a pseudo target that the peer's EXIT op
#   fires, or that a lost peer fires with "nodedown"; our end's death reaches the
#   peer through its ordinary subscription (a death certificate), and our unlink
#   through an *unlink notice* in the same batcher (a certificate whose key has
#   bit 63 set and whose reason is the peer's pid id), so it is ordered before
#   any certificate that follows it.
#
# A fired link record keeps its other end's (conn, key) in other_conn and
# other_key_high:other_key_low (the words of target, t_prev, t_next: records.h),
# so that unlink can still cancel a signal that waits in the dispatcher queue.


def set_exit_type(Core self, exit_type):
    """The named tuple that trapping processes receive: ``exit_type(pid, reason)``."""
    self.exit_type = exit_type


def set_trap(Core self, uint64_t pid_id, bint trap):
    """Make a live process trap exits (Exit messages) or not (die). -> False if dead."""
    cdef uint32_t slot
    with cython.critical_section(self):
        slot = process_slot(self, pid_id)
        if slot == NIL:
            return False
        if trap:
            self.processes[slot].alive |= PROCESS_TRAP
        else:
            self.processes[slot].alive &= ~PROCESS_TRAP
        return True


def live_owners(Core self):
    """The owners of every live process (for a node stop)."""
    cdef uint32_t slot
    with cython.critical_section(self):
        return [self.process_objects[slot] for slot in range(self.processes_top)
                if self.processes[slot].alive]


def take_link_kills(Core self):
    """-> [(owner, reason)] of processes that link signals killed since last asked."""
    with cython.critical_section(self):
        kills = self.link_kills
        self.link_kills = []
        return kills


cdef uint32_t link_find(Core self, uint32_t s, uint32_t conn, uint64_t key,
                        bint fired_too) noexcept:
    """Process s's link record whose other end is (conn, key), or NIL.

    A LIVE record is in both s's list and the target's: they are walked in lockstep,
    so the cost is the shorter of the two (one process linked to 100k others, or
    100k processes linked to one, both stay cheap). A FIRED one (fired_too: unlink
    only) is found in s's list.
    """
    cdef uint32_t t = target_find(self, conn, key), by_target, by_watcher
    cdef MonitorRecord *rec
    if t != NIL:
        by_target = self.targets[t].head
        by_watcher = self.processes[s].watch_head
        while by_target != NIL and by_watcher != NIL:
            rec = &self.monitors[by_target]
            if rec.subscriber == s and rec.flags & FLAG_LINK:
                return by_target
            rec = &self.monitors[by_watcher]
            if rec.flags & 3 == STATE_LIVE and rec.target == t and rec.flags & FLAG_LINK:
                return by_watcher
            by_target = self.monitors[by_target].t_next
            by_watcher = rec.s_next
    if not fired_too:
        return NIL
    by_watcher = self.processes[s].watch_head
    while by_watcher != NIL:
        rec = &self.monitors[by_watcher]
        if (rec.flags & FLAG_LINK and rec.flags & 3 == STATE_FIRED and rec.other_conn == conn
                and ((<uint64_t>rec.other_key_high << 32) | rec.other_key_low) == key):
            return by_watcher
        by_watcher = rec.s_next
    return NIL


cdef uint64_t link_add(Core self, uint32_t s, uint32_t conn, uint64_t key) except? 0:
    """A LIVE link record of process slot s watching (conn, key). -> its ref."""
    cdef uint32_t t, m
    cdef MonitorRecord *rec
    t = target_find(self, conn, key)
    if t == NIL:
        t = target_add(self, conn, key)
        if conn and conn < PEER_CONN:
            enqueue_connector(self, conn, key)
    m = monitor_alloc(self)
    rec = &self.monitors[m]
    rec.subscriber = s
    rec.target = t
    rec.flags = STATE_LIVE | FLAG_LINK
    rec.t_prev = NIL
    rec.t_next = self.targets[t].head
    if rec.t_next != NIL:
        self.monitors[rec.t_next].t_prev = m
    self.targets[t].head = m
    link_to_subscriber(self, m, s)
    self.links_live += 1
    self.n_link += 1
    return (<uint64_t>rec.gen << 32) | m


cdef int link_remove(Core self, uint32_t m) except -1:
    """Drop link record m (LIVE: releasing its target; FIRED: its signal goes stale)."""
    cdef uint32_t t
    if self.monitors[m].flags & 3 == STATE_LIVE:
        t = self.monitors[m].target
        unlink_from_target(self, m)
        release_target_if_empty(self, t)
    unlink_from_subscriber(self, m)
    monitor_free(self, m)
    self.n_unlink += 1
    return 0


cdef IdQueue link_queue(Core self, uint32_t conn):
    cdef Py_ssize_t c
    while len(self.link_queues) <= conn:
        c = len(self.link_queues)
        if self.connector_queues[c] is None:      # closed: no queues again
            self.link_queues.append(None)
            self.link_reasons.append(None)
        else:
            self.link_queues.append(IdQueue())
            self.link_reasons.append(deque())
    queue = self.link_queues[conn]
    if queue is None:     # unreachable: a closed connector has no live link records
        raise RuntimeError(f"link op on closed connector {conn}")
    return <IdQueue>queue


cdef int link_op(Core self, uint32_t conn, uint64_t op, uint64_t target, uint64_t other,
                 object reason) except -1:
    """Queue a link op for connector conn: 3 words (op, target, other)."""
    cdef IdQueue queue = link_queue(self, conn)
    if op == EXIT_OP:
        (<object>self.link_reasons[conn]).append(reason)
    queue.push(op)
    queue.push(target)
    queue.push(other)
    return 0


cdef int links_on_exit(Core self, uint32_t s, uint64_t pid_id, object reason) except -1:
    """Process s dies: one EXIT op per connector through which it linked out.

    Allocates no Python object (a cyclic GC run could start finalizers and let another
    thread in while the dying process is half torn down): the connectors told so far
    are kept in a C array.
    """
    cdef uint32_t m = self.processes[s].watch_head, conn, i
    cdef MonitorRecord *rec
    cdef uint32_t local_told[16]
    cdef uint32_t *told = local_told
    cdef uint32_t *grown
    cdef uint32_t n_told = 0, cap = 16
    try:
        while m != NIL:
            rec = &self.monitors[m]
            if rec.flags & FLAG_LINK and rec.flags & 3 == STATE_LIVE:
                conn = self.targets[rec.target].conn
                if conn and conn < PEER_CONN:
                    for i in range(n_told):
                        if told[i] == conn:
                            break
                    else:
                        if n_told == cap:
                            grown = <uint32_t *>PyMem_Malloc(2 * cap * sizeof(uint32_t))
                            if grown is NULL:
                                raise MemoryError()
                            memcpy(grown, told, n_told * sizeof(uint32_t))
                            if told is not local_told:
                                PyMem_Free(told)
                            told = grown
                            cap *= 2
                        told[n_told] = conn
                        n_told += 1
                        link_op(self, conn, EXIT_OP, 0, pid_id, reason)
            m = rec.s_next
    finally:
        if told is not local_told:
            PyMem_Free(told)
    return 0


cdef int link_unlinked(Core self, uint32_t conn, uint64_t key, object other) except -1:
    """An unlink notice from connector conn's node: remote `key` unlinked `other`."""
    cdef uint32_t s, m
    if type(other) is not int or not 0 <= other < 2 ** 64:
        raise ValueError("unlink notice without a pid id")
    s = process_slot(self, other)
    if s == NIL:
        return 0
    m = link_find(self, s, conn, key, True)
    if m != NIL:
        link_remove(self, m)
    return 0


cdef bint hand_link(Core self, uint32_t s, uint64_t ref, object death,
                    list touched) except -1:
    """Deliver the exit signal of live queued link entry `ref` of watcher `s` (see
    ``hand_down`` in delivery.pxi). -> False when it went stale.

    As for a DOWN: the Exit message is built first (an allocation may run other
    threads), then, with no allocation in between, the entry is checked again, its
    record freed and the message appended. A non-trapping watcher is not touched
    here: it is queued in ``link_kills`` (unless the reason is "normal"), for the
    Python layer to exit it after the dispatch.
    """
    cdef bint trap
    pid = (<tuple>death)[0]
    reason = (<tuple>death)[1]
    message = None
    while True:
        trap = (self.processes[s].alive & PROCESS_TRAP) != 0
        if trap and message is None:
            message = self.exit_type(pid, reason)
        if live_subscriber(self, ref) != s:
            return False
        if trap == (self.processes[s].alive & PROCESS_TRAP != 0):
            break                             # trap_exits unchanged since read
    # no allocation from the checks above to the append: nothing else runs meanwhile
    release_fired(self, s, ref)
    self.n_link_signal += 1
    if trap:
        self.deque_append(self.inboxes[s], message)
        touch(self, s, touched)
    elif not (type(reason) is str and reason == "normal"):
        self.link_kills.append((self.process_objects[s], reason))
    return True


def link_local(Core self, uint64_t a, uint64_t b):
    """Link live local processes a and b (both ends). -> LINK_DONE, NO_SUBSCRIBER
    (a is dead) or TARGET_DEAD (b is dead or unknown: the caller signals noproc)."""
    cdef uint32_t sa, sb
    with cython.critical_section(self):
        sa = process_slot(self, a)
        if sa == NIL:
            return RESULT_NO_SUBSCRIBER
        if a == b:
            return RESULT_LINK_DONE
        sb = process_slot(self, b)
        if sb == NIL:
            return RESULT_TARGET_DEAD
        if link_find(self, sa, 0, b, False) == NIL:
            link_add(self, sa, 0, b)
            link_add(self, sb, 0, a)
        return RESULT_LINK_DONE


def link_remote(Core self, uint64_t a, uint32_t conn, uint64_t key, list others):
    """Link local a to remote key through connector conn (queues the LINK op).

    `others` are the other conns that may already hold this link (proxy peers of the
    same node incarnation): linked already is a no-op. -> LINK_DONE, NO_SUBSCRIBER or
    CONNECTOR_CLOSED (ask the node for the current connector).
    """
    cdef uint32_t sa
    with cython.critical_section(self):
        sa = process_slot(self, a)
        if sa == NIL:
            return RESULT_NO_SUBSCRIBER
        if self.connector_queues[conn] is None:
            return RESULT_CONNECTOR_CLOSED
        if link_find(self, sa, conn, key, False) != NIL:
            return RESULT_LINK_DONE
        for other in others:
            if link_find(self, sa, <uint32_t>other, key, False) != NIL:
                return RESULT_LINK_DONE
        link_add(self, sa, conn, key)
        link_op(self, conn, LINK_OP, key, a, None)
        return RESULT_LINK_DONE


def link_fired(Core self, uint64_t a, uint32_t conn, uint64_t key, object death):
    """A link whose signal is due at once (noproc, nodedown). -> ref, or NO_SUBSCRIBER."""
    cdef uint32_t s, m
    cdef MonitorRecord *rec
    cdef uint64_t ref
    with cython.critical_section(self):
        s = process_slot(self, a)
        if s == NIL:
            return RESULT_NO_SUBSCRIBER
        m = monitor_alloc(self)
        rec = &self.monitors[m]
        rec.subscriber = s
        rec.other_conn = conn
        rec.other_key_high = <uint32_t>(key >> 32)
        rec.other_key_low = <uint32_t>(key & LOW32)
        rec.flags = STATE_FIRED | FLAG_LINK
        link_to_subscriber(self, m, s)
        ref = (<uint64_t>rec.gen << 32) | m
        self.downs.push(ref, death)
        self.links_live += 1
        self.n_link += 1
        self.n_enqueue += 1
        return ref


def unlink(Core self, uint64_t a, uint64_t key, list conns):
    """Drop a's links to `key` on each of `conns` (0: local; a connector; PEER_CONN | p),
    the other end's too: the local record, an UNLINK op, or an unlink notice.
    -> number of links dropped."""
    cdef uint32_t sa, sb, m, conn
    cdef bint live
    cdef Py_ssize_t dropped = 0
    with cython.critical_section(self):
        sa = process_slot(self, a)
        if sa == NIL:
            return 0
        for c in conns:
            conn = c
            m = link_find(self, sa, conn, key, True)
            if m == NIL:
                continue
            live = self.monitors[m].flags & 3 == STATE_LIVE
            link_remove(self, m)
            dropped += 1
            if conn == 0:
                sb = process_slot(self, key)
                if sb != NIL:
                    m = link_find(self, sb, 0, a, True)
                    if m != NIL:
                        link_remove(self, m)
            elif not live:
                pass                      # the other end is gone already
            elif conn < PEER_CONN:
                link_op(self, conn, UNLINK_OP, key, a, None)
            else:
                (<CertificateQueue>self.certificate_queues[conn - PEER_CONN]).push(
                    a | UNSUBSCRIBE, key)
        return dropped


def connector_take_links(Core self, uint32_t conn, size_t max_ops):
    """Pop up to max_ops link ops of connector conn. -> (packed ops, reasons).

    Each op is 24 bytes: ``op u32, reason index u32, target u64, other u64``
    (little-endian); an EXIT op's index points into the returned reasons.
    """
    cdef IdQueue queue
    cdef bytes ops
    cdef uint64_t *words
    cdef size_t n, i
    cdef list reasons = []
    with cython.critical_section(self):
        if (conn >= len(self.link_queues) or self.link_queues[conn] is None
                or not len(<IdQueue>self.link_queues[conn])):
            return b"", reasons
        queue = <IdQueue>self.link_queues[conn]
        n = min(max_ops, queue.length // 3)
        ops = queue.take_bytes(3 * n)
        pending = self.link_reasons[conn]
        words = <uint64_t *>PyBytes_AS_STRING(ops)     # fresh: ours to fill in
        for i in range(n):
            if le64toh(words[3 * i]) == EXIT_OP:
                words[3 * i] = htole64(EXIT_OP | (<uint64_t>len(reasons) << 32))
                reasons.append(deque_popleft(pending))
        return ops, reasons


def connector_link_pending(Core self, uint32_t conn):
    """Link ops queued on connector conn."""
    return link_ops_pending(self, conn)


cdef Py_ssize_t link_ops_pending(Core self, uint32_t conn) except -1:
    if conn >= len(self.link_queues) or self.link_queues[conn] is None:
        return 0
    return len(<IdQueue>self.link_queues[conn]) // 3


cdef int links_clear(Core self, uint32_t conn) except -1:
    if conn < len(self.link_queues) and self.link_queues[conn] is not None:
        (<IdQueue>self.link_queues[conn]).clear()
        deque_clear(self.link_reasons[conn])
    return 0


def links_apply(Core self, uint32_t peer, str address not None, uint64_t incarnation,
                const unsigned char[::1] ops, list reasons):
    """Apply the link ops of one SUBSCRIBE from proxy peer `peer` (node `address`,
    `incarnation`), in order. LINK needs the target's subscription (sent before it
    in the same batch stream); a dead target is skipped (its subscribe answers
    noproc). -> number of exit signals queued (EXIT ops).

    Raises ValueError, applying nothing, on a malformed section.
    """
    cdef Py_ssize_t n = ops.shape[0] // 24, i, fired = 0
    cdef uint64_t op, target, other
    cdef uint32_t kind, index, s, m, pconn = PEER_CONN | peer, own = 0, t
    if ops.shape[0] % 24:
        raise ValueError("link ops are not whole 24-byte records")
    for i in range(n):                   # all checked first: all or nothing
        memcpy(&op, &ops[i * 24], 8)
        op = le64toh(op)
        kind = <uint32_t>(op & LOW32)
        if kind < LINK_OP or kind > EXIT_OP:
            raise ValueError(f"unknown link op {kind}")
        if kind == EXIT_OP and (op >> 32) >= <uint64_t>len(reasons):
            raise ValueError("link op reason index out of range")
    with cython.critical_section(self):
        route = self.routes.get(address)
        if route is not None and (<tuple>route)[1] == incarnation:
            own = (<tuple>route)[0]      # our own connector to that node, if any
        for i in range(n):
            memcpy(&op, &ops[i * 24], 8)
            memcpy(&target, &ops[i * 24 + 8], 8)
            memcpy(&other, &ops[i * 24 + 16], 8)
            op = le64toh(op)
            target = le64toh(target)
            other = le64toh(other)
            kind = <uint32_t>(op & LOW32)
            index = <uint32_t>(op >> 32)
            if kind == EXIT_OP:
                if target_find(self, pconn, other) != NIL:
                    # allocate, then find again (a GC run may let another thread in)
                    death = (Pid.new(address, incarnation, other), reasons[index], None)
                    t = target_find(self, pconn, other)
                    if t != NIL:
                        fired += fire_target(self, t, death)
                continue
            s = process_slot(self, target)
            if s == NIL:
                continue
            if kind == LINK_OP:
                # linked already, from either side: one link, one signal
                if link_find(self, s, pconn, other, False) != NIL:
                    continue
                if own and link_find(self, s, own, other, False) != NIL:
                    continue
                link_add(self, s, pconn, other)
            else:
                m = link_find(self, s, pconn, other, True)
                if m != NIL:
                    link_remove(self, m)
                if own:
                    m = link_find(self, s, own, other, True)
                    if m != NIL:
                        if self.monitors[m].flags & 3 == STATE_LIVE:
                            link_op(self, own, UNLINK_OP, other, target, None)
                        link_remove(self, m)
    return fired


def links_drop_peer(Core self, uint32_t peer, str address not None, uint64_t incarnation):
    """Proxy peer `peer` is gone: every link it made fires "nodedown". -> signals queued."""
    cdef uint32_t t, pconn = PEER_CONN | peer
    cdef uint64_t key
    cdef Py_ssize_t fired = 0
    with cython.critical_section(self):
        if not self.links_live:
            return 0
        for t in range(self.targets_top):
            if self.targets[t].conn == pconn and self.targets[t].head != NIL:
                key = self.targets[t].key
                death = (Pid.new(address, incarnation, key), "nodedown", None)
                # the allocation may have let another thread free or reuse slot t
                if (self.targets[t].conn == pconn and self.targets[t].key == key
                        and self.targets[t].head != NIL):
                    fired += fire_target(self, t, death)
    return fired


def link_sizes(Core self):
    """Link gauges -> dict (link records on this node, link ops queued)."""
    cdef Py_ssize_t queued = 0
    for queue in self.link_queues[1:]:
        if queue is None:
            continue
        queued += len(<IdQueue>queue) // 3
    return {"links": self.links_live, "link_ops_queued": queued}


def link_counters(Core self):
    """Link counters -> dict."""
    return {"link": self.n_link, "unlink": self.n_unlink, "link_signal": self.n_link_signal}


cdef int check_links(Core self) except -1:
    """Invariants of the link records (called by ``check_core``)."""
    cdef uint32_t m, n = 0
    cdef MonitorRecord *rec
    for m in range(self.monitors_top):
        rec = &self.monitors[m]
        if rec.flags & 3 != STATE_FREE and rec.flags & FLAG_LINK:
            n += 1
            if rec.flags & FLAG_BY_NAME:
                fail(f"link record {m} is flagged by name")
    if n != self.links_live:
        fail(f"links_live {self.links_live} but {n} link records in use")
    return 0
