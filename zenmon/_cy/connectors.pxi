# Connectors (the local side's link to each remote node): one instruction queue per
# connector (subscribe / unsubscribe of target keys, sent in batches by
# connector.py), the routes that send a monitor of a remote pid straight to its
# connector, and remote deaths turned into DOWNs: a dead summary's certificates, or
# every monitor of a lost node at once ("nodedown"). Connector 0 is this node. Every
# function here runs inside the caller's critical section.


cdef int enqueue_connector(Core self, uint32_t conn, uint64_t value) except -1:
    (<IdQueue>self.connector_queues[conn]).push(value)
    self.n_connector_enqueue += 1
    return 0


cdef uint32_t route_of(Core self, Pid target) except? <uint32_t>NIL:
    """The connector of `target`'s node (0: this node), or NIL when that node or that
    incarnation has no known route (the Python layer takes the slow path)."""
    if target.node is self.address or target.node == self.address:
        return 0 if target.incarnation == self.incarnation else NIL
    route = self.routes.get(target.node)
    if route is None or (<tuple>route)[1] != target.incarnation:
        return NIL
    return (<tuple>route)[0]


cdef uint32_t connector_open(Core self) except? <uint32_t>NIL:
    """A new connector's instruction queue and target count. -> its index (>= 1)."""
    cdef uint32_t conn = len(self.connector_queues)
    cdef uint64_t *grown
    if conn == self.conn_cap:
        grown = <uint64_t *>PyMem_Realloc(self.conn_targets,
                                          2 * self.conn_cap * sizeof(uint64_t))
        if grown is NULL:
            raise MemoryError()
        self.conn_targets = grown
        self.conn_cap *= 2
    self.conn_targets[conn] = 0
    self.connector_queues.append(IdQueue())
    return conn


cdef bint connector_try_close(Core self, uint32_t conn) except -1:
    """Free connector `conn`'s queues unless it still holds something (see
    ``Core.connector_close``)."""
    queue = self.connector_queues[conn]
    if queue is None:
        return True
    if (self.conn_targets[conn] or len(<IdQueue>queue)
            or link_ops_pending(self, conn)):
        return False
    self.connector_queues[conn] = None
    if conn < len(self.link_queues):
        self.link_queues[conn] = None
        self.link_reasons[conn] = None
    return True


cdef Py_ssize_t fire_summary(Core self, uint32_t conn, str node, uint64_t incarnation,
                             const unsigned char[::1] keys, list reasons,
                             const unsigned char[::1] indexes, dict names) except -1:
    """The DOWNs of a dead summary whose lengths and indexes were checked."""
    cdef Py_ssize_t n = keys.shape[0] // 8, i, fired = 0
    cdef uint64_t key
    cdef uint32_t t, index
    for i in range(n):
        memcpy(&key, &keys[i * 8], 8)
        key = le64toh(key)
        index = 0
        if indexes.shape[0]:
            memcpy(&index, &indexes[i * 4], 4)
            index = le32toh(index)
        if key & UNSUBSCRIBE:          # an unlink notice (see links.pxi)
            link_unlinked(self, conn, key & ~UNSUBSCRIBE, reasons[index])
            continue
        if target_find(self, conn, key) == NIL:
            continue
        # allocate first, then find the target again: an allocation can run the
        # cyclic GC, whose finalizers may let another thread change it
        if key & NAME_KEY:
            name_pid = names.get(key)
            death = (name_pid, reasons[index], name_pid)
        else:
            death = (Pid.new(node, incarnation, key), reasons[index], None)
        t = target_find(self, conn, key)
        if t != NIL:
            fired += fire_target(self, t, death)
    return fired


cdef tuple fire_connector_chunk(Core self, uint32_t conn, str node, uint64_t incarnation,
                                dict names, object reason, uint32_t start,
                                Py_ssize_t max_downs):
    """One chunk of ``Core.fire_connector``. -> (DOWNs queued, resume slot or -1)."""
    cdef uint32_t t
    cdef uint64_t key
    cdef Py_ssize_t fired = 0
    if start == 0 and self.connector_queues[conn] is not None:
        (<IdQueue>self.connector_queues[conn]).clear()
        links_clear(self, conn)
    for t in range(start, self.targets_top):
        if self.targets[t].conn != conn:
            continue
        if max_downs >= 0 and fired >= max_downs:
            return fired, t
        key = self.targets[t].key
        if key & NAME_KEY:
            name_pid = names.get(key)
            death = (name_pid, reason, name_pid)
        else:
            death = (Pid.new(node, incarnation, key), reason, None)
        # the allocation may have let another thread free or reuse slot t
        if self.targets[t].conn == conn and self.targets[t].key == key:
            fired += fire_target(self, t, death)
    return fired, -1


cdef Py_ssize_t move_name_targets(Core self, uint32_t old, uint32_t new,
                                  dict keys) except -1:
    """The body of ``Core.connector_move_names``. -> number of targets moved."""
    cdef uint32_t t, into, m, last
    cdef uint64_t key, new_key
    cdef Py_ssize_t moved = 0
    if self.connector_queues[new] is None:
        raise ValueError("connector_move_names into a closed connector")
    for t in range(self.targets_top):
        if self.targets[t].conn != old or not self.targets[t].key & NAME_KEY:
            continue
        key = self.targets[t].key
        new_key = keys[key]
        into = target_find(self, new, new_key)
        if into == NIL:
            into = target_add(self, new, new_key)
            enqueue_connector(self, new, new_key)
        m = self.targets[t].head
        last = NIL
        while m != NIL:                # re-point, then splice the whole list
            self.monitors[m].target = into
            last = m
            m = self.monitors[m].t_next
        if last != NIL:
            self.monitors[last].t_next = self.targets[into].head
            if self.targets[into].head != NIL:
                self.monitors[self.targets[into].head].t_prev = last
            self.targets[into].head = self.targets[t].head
        self.targets[t].head = NIL
        target_remove(self, t)
        moved += 1
    return moved
