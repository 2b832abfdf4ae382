# Tables: the monitor, target and process slabs, the target index, and the intrusive
# lists that tie them together (a target's monitors, a process's own monitors).
#
# A slab is a PyMem array of fixed-size records that grows by doubling; a record's
# slot is its identity, and a generation in the record makes ``gen << 32 | slot`` a
# ref (monitors) or a pid id (processes) that a freed and reused slot no longer
# answers to. Free slots are chained through a field of the record itself (the
# ``*_free`` heads in Core). Every function here runs inside the caller's critical
# section and calls no Python code, apart from growing a slab (MemoryError) and
# queueing DOWNs (``fire_target``).


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64 finaliser: sequential ids spread over the whole index
    x ^= x >> 30
    x *= <uint64_t>0xbf58476d1ce4e5b9
    x ^= x >> 27
    x *= <uint64_t>0x94d049bb133111eb
    x ^= x >> 31
    return x


cdef inline uint64_t target_hash(uint32_t conn, uint64_t key) noexcept nogil:
    return mix64(key ^ (<uint64_t>conn * <uint64_t>0x9E3779B97F4A7C15))


cdef inline void *grow_slab(void *items, size_t item_size, uint32_t *capacity) except NULL:
    cdef uint64_t cap = <uint64_t>capacity[0] * 2 if capacity[0] else 1024
    cdef void *fresh
    if cap >= NIL:
        raise MemoryError("zenmon table is full (2**32 - 1 entries)")
    fresh = PyMem_Realloc(items, cap * item_size)
    if fresh is NULL:
        raise MemoryError()
    capacity[0] = <uint32_t>cap
    return fresh


# ------------------------------------------------------------------- monitors


cdef uint32_t monitor_alloc(Core self) except? <uint32_t>NIL:
    cdef uint32_t m
    if self.monitors_free != NIL:
        m = self.monitors_free
        self.monitors_free = self.monitors[m].next_free
    else:
        if self.monitors_top == self.monitors_cap:
            self.monitors = <MonitorRecord *>grow_slab(
                self.monitors, sizeof(MonitorRecord), &self.monitors_cap)
        m = self.monitors_top
        self.monitors_top += 1
        self.monitors[m].gen = 1
    self.monitors_live += 1
    return m


cdef void monitor_free(Core self, uint32_t m) noexcept:
    cdef MonitorRecord *rec = &self.monitors[m]
    if rec.flags & FLAG_LINK:
        self.links_live -= 1
    rec.flags = STATE_FREE
    self.monitors_live -= 1
    rec.gen += 1
    if rec.gen == 0:
        # every generation of this slot has been handed out: retire it for the
        # life of the node, so an old ref can never name a new monitor
        self.n_retired += 1       # generation 0 is never handed out
        return
    rec.next_free = self.monitors_free
    self.monitors_free = m


cdef void unlink_from_target(Core self, uint32_t m) noexcept:
    cdef MonitorRecord *rec = &self.monitors[m]
    if rec.t_prev != NIL:
        self.monitors[rec.t_prev].t_next = rec.t_next
    else:
        self.targets[rec.target].head = rec.t_next
    if rec.t_next != NIL:
        self.monitors[rec.t_next].t_prev = rec.t_prev


cdef void link_to_subscriber(Core self, uint32_t m, uint32_t s) noexcept:
    cdef MonitorRecord *rec = &self.monitors[m]
    cdef ProcessRecord *proc = &self.processes[s]
    rec.s_prev = NIL
    rec.s_next = proc.watch_head
    if rec.s_next != NIL:
        self.monitors[rec.s_next].s_prev = m
    proc.watch_head = m


cdef void unlink_from_subscriber(Core self, uint32_t m) noexcept:
    cdef MonitorRecord *rec = &self.monitors[m]
    if rec.s_prev != NIL:
        self.monitors[rec.s_prev].s_next = rec.s_next
    else:
        self.processes[rec.subscriber].watch_head = rec.s_next
    if rec.s_next != NIL:
        self.monitors[rec.s_next].s_prev = rec.s_prev


cdef uint64_t add_monitor(Core self, uint64_t subscriber, uint32_t conn, uint64_t key,
                          bint by_name) except? 2:
    """A LIVE monitor of (conn, key) held by `subscriber`. -> its ref, or NO_SUBSCRIBER,
    TARGET_DEAD or CONNECTOR_CLOSED (see ``Core.monitor``)."""
    cdef uint32_t s, t, m
    cdef MonitorRecord *rec
    s = process_slot(self, subscriber)
    if s == NIL:
        return RESULT_NO_SUBSCRIBER
    if conn and self.connector_queues[conn] is None:
        return RESULT_CONNECTOR_CLOSED
    t = target_find(self, conn, key)
    if t == NIL:
        # a watched local target is alive by invariant (its death removes the
        # target record), so liveness costs a lookup only for a first monitor
        if conn == 0 and process_slot(self, key) == NIL:
            return RESULT_TARGET_DEAD
        t = target_add(self, conn, key)
        if conn:
            enqueue_connector(self, conn, key)
    m = monitor_alloc(self)
    rec = &self.monitors[m]
    rec.subscriber = s
    rec.target = t
    rec.flags = STATE_LIVE | (FLAG_BY_NAME if by_name else 0)
    rec.t_prev = NIL
    rec.t_next = self.targets[t].head
    if rec.t_next != NIL:
        self.monitors[rec.t_next].t_prev = m
    self.targets[t].head = m
    link_to_subscriber(self, m, s)
    self.n_monitor += 1
    return (<uint64_t>rec.gen << 32) | m


cdef uint64_t add_fired_monitor(Core self, uint64_t subscriber, object death,
                                bint by_name) except? 0:
    """A monitor whose DOWN is queued at once. -> its ref, or NO_SUBSCRIBER."""
    cdef uint32_t s, m
    cdef MonitorRecord *rec
    cdef uint64_t ref
    s = process_slot(self, subscriber)
    if s == NIL:
        return RESULT_NO_SUBSCRIBER
    m = monitor_alloc(self)
    rec = &self.monitors[m]
    rec.subscriber = s
    rec.target = NIL
    rec.flags = STATE_FIRED | (FLAG_BY_NAME if by_name else 0)
    link_to_subscriber(self, m, s)
    ref = (<uint64_t>rec.gen << 32) | m
    self.downs.push(ref, death)
    self.n_monitor += 1
    self.n_enqueue += 1
    return ref


cdef bint remove_monitor(Core self, uint64_t subscriber, uint64_t ref) except -1:
    """Drop monitor `ref` of `subscriber` (LIVE or FIRED; not a link record).

    -> False for an unknown, stale or foreign ref.
    """
    cdef uint32_t m = <uint32_t>(ref & LOW32), t
    cdef MonitorRecord *rec
    if m >= self.monitors_top:
        return False
    rec = &self.monitors[m]
    if rec.gen != <uint32_t>(ref >> 32) or rec.flags & 3 == STATE_FREE:
        return False
    if rec.flags & FLAG_LINK:          # links are undone by unlink only
        return False
    if rec.subscriber != process_slot(self, subscriber):
        return False
    if rec.flags & 3 == STATE_LIVE:
        t = rec.target
        unlink_from_target(self, m)
        release_target_if_empty(self, t)
    unlink_from_subscriber(self, m)
    monitor_free(self, m)
    self.n_demonitor += 1
    return True


cdef Py_ssize_t fire_target(Core self, uint32_t t, object death) except -1:
    """Queue one DOWN per monitor of target t (sharing `death`), then drop t."""
    cdef uint32_t m = self.targets[t].head, nxt
    cdef MonitorRecord *rec
    cdef Py_ssize_t n = 0
    untrack_death(death)
    while m != NIL:
        rec = &self.monitors[m]
        nxt = rec.t_next
        rec.flags = STATE_FIRED | (rec.flags & (FLAG_BY_NAME | FLAG_LINK))
        if rec.flags & FLAG_LINK:      # kept for unlink (see links.pxi)
            rec.other_conn = self.targets[t].conn
            rec.other_key_high = <uint32_t>(self.targets[t].key >> 32)
            rec.other_key_low = <uint32_t>(self.targets[t].key & LOW32)
        self.downs.push((<uint64_t>rec.gen << 32) | m, death)
        n += 1
        m = nxt
    self.targets[t].head = NIL
    target_remove(self, t)
    self.n_enqueue += n
    self.n_batches += 1
    self.n_batch_length = n
    return n


# -------------------------------------------------------------------- targets
# The index maps (conn, key) to target slot + 1 (0: empty), by linear probing.


cdef uint32_t target_find(Core self, uint32_t conn, uint64_t key) noexcept:
    cdef uint64_t i = target_hash(conn, key) & self.target_index_mask
    cdef uint32_t t
    while True:
        t = self.target_index[i]
        if t == 0:
            return NIL
        t -= 1
        if self.targets[t].key == key and self.targets[t].conn == conn:
            return t
        i = (i + 1) & self.target_index_mask


cdef int target_index_grow(Core self) except -1:
    cdef uint64_t size = (self.target_index_mask + 1) * 2, i, j
    cdef uint32_t *fresh = <uint32_t *>PyMem_Malloc(size * sizeof(uint32_t))
    cdef uint32_t t
    if fresh is NULL:
        raise MemoryError()
    for i in range(size):
        fresh[i] = 0
    for i in range(self.target_index_mask + 1):
        t = self.target_index[i]
        if t:
            j = target_hash(self.targets[t - 1].conn, self.targets[t - 1].key) & (size - 1)
            while fresh[j]:
                j = (j + 1) & (size - 1)
            fresh[j] = t
    PyMem_Free(self.target_index)
    self.target_index = fresh
    self.target_index_mask = size - 1
    return 0


cdef uint32_t target_add(Core self, uint32_t conn, uint64_t key) except? <uint32_t>NIL:
    cdef uint32_t t
    cdef uint64_t i
    if (<uint64_t>self.targets_live + 1) * 2 > self.target_index_mask + 1:
        target_index_grow(self)
    if self.targets_free != NIL:
        t = self.targets_free
        self.targets_free = self.targets[t].next_free
    else:
        if self.targets_top == self.targets_cap:
            self.targets = <TargetRecord *>grow_slab(
                self.targets, sizeof(TargetRecord), &self.targets_cap)
        t = self.targets_top
        self.targets_top += 1
    self.targets[t].key = key
    self.targets[t].conn = conn
    self.targets[t].head = NIL
    i = target_hash(conn, key) & self.target_index_mask
    while self.target_index[i]:
        i = (i + 1) & self.target_index_mask
    self.target_index[i] = t + 1
    self.targets_live += 1
    if conn < PEER_CONN:               # PEER_CONN and up: links made by a peer
        self.conn_targets[conn] += 1
    return t


cdef void target_remove(Core self, uint32_t t) noexcept:
    # linear probing with backward-shift deletion: no tombstones
    cdef uint64_t mask = self.target_index_mask
    cdef uint64_t i = target_hash(self.targets[t].conn, self.targets[t].key) & mask
    cdef uint64_t j, k
    cdef uint32_t u
    while self.target_index[i] != t + 1:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        u = self.target_index[j]
        if u == 0:
            break
        k = target_hash(self.targets[u - 1].conn, self.targets[u - 1].key) & mask
        if (j > i and (k <= i or k > j)) or (j < i and (k <= i and k > j)):
            self.target_index[i] = u
            i = j
    self.target_index[i] = 0
    if self.targets[t].conn < PEER_CONN:
        self.conn_targets[self.targets[t].conn] -= 1
    self.targets[t].conn = NIL
    self.targets[t].next_free = self.targets_free
    self.targets_free = t
    self.targets_live -= 1


cdef int release_target_if_empty(Core self, uint32_t t) except -1:
    cdef TargetRecord *target = &self.targets[t]
    if target.head != NIL:
        return 0
    if target.conn and target.conn < PEER_CONN:
        enqueue_connector(self, target.conn, target.key | UNSUBSCRIBE)
    target_remove(self, t)
    return 0


# ------------------------------------------------------------------ processes


cdef uint32_t process_slot(Core self, uint64_t pid_id) noexcept:
    """The slot of live process `pid_id`, or NIL (dead, or never was)."""
    cdef uint32_t slot = <uint32_t>(pid_id & LOW32)
    if (slot < self.processes_top and self.processes[slot].alive
            and self.processes[slot].gen == <uint32_t>(pid_id >> 32)):
        return slot
    return NIL


cdef int grow_processes(Core self) except -1:
    """Double the process slab and its stamps; on failure both stay as they were."""
    cdef uint64_t cap = <uint64_t>self.processes_cap * 2 if self.processes_cap else 1024
    cdef uint32_t *stamps
    if cap >= NIL:
        raise MemoryError("zenmon table is full (2**32 - 1 entries)")
    stamps = <uint32_t *>PyMem_Realloc(self.stamps, cap * sizeof(uint32_t))
    if stamps is NULL:
        raise MemoryError()
    self.stamps = stamps            # larger than needed until the slab follows
    self.processes = <ProcessRecord *>grow_slab(
        self.processes, sizeof(ProcessRecord), &self.processes_cap)
    return 0


cdef uint64_t process_alloc(Core self, object inbox, object owner) except 0:
    """A live process slot delivering to `inbox`. -> its pid id (never 0)."""
    cdef uint32_t slot
    cdef ProcessRecord *proc
    if self.processes_free != NIL:
        slot = self.processes_free
        self.processes_free = self.processes[slot].next_free
        self.inboxes[slot] = inbox
        self.process_objects[slot] = owner
    else:
        if self.processes_top == self.processes_cap:
            grow_processes(self)
        self.inboxes.append(inbox)
        self.process_objects.append(owner)
        slot = self.processes_top
        self.processes_top += 1
        self.processes[slot].gen = 1
        self.stamps[slot] = 0
    proc = &self.processes[slot]
    proc.alive = PROCESS_ALIVE
    proc.watch_head = NIL
    proc.proxy_head = NIL
    self.processes_live += 1
    return (<uint64_t>proc.gen << 32) | slot


cdef inline int drop_watches(Core self, uint32_t slot) except -1:
    """Free every monitor that dying process `slot` holds (releasing their targets)."""
    cdef uint32_t m = self.processes[slot].watch_head, nxt, t
    while m != NIL:
        nxt = self.monitors[m].s_next
        if self.monitors[m].flags & 3 == STATE_LIVE:
            t = self.monitors[m].target
            unlink_from_target(self, m)
            release_target_if_empty(self, t)
        monitor_free(self, m)
        m = nxt
    self.processes[slot].watch_head = NIL
    return 0


cdef inline int process_free(Core self, uint32_t slot) except -1:
    """Mark `slot` dead, drop its inbox and owner, and put it on the free list (or
    retire it: see below)."""
    self.processes[slot].alive = 0
    self.inboxes[slot] = None
    self.process_objects[slot] = None
    self.processes_live -= 1
    self.processes[slot].gen += 1
    if self.processes[slot].gen == 0:
        # all generations used: retire the slot for the life of the node, so a stale
        # pid can never name a new process (16 bytes per 2**32 exits)
        self.n_retired += 1       # generation 0 is never handed out
    else:
        self.processes[slot].next_free = self.processes_free
        self.processes_free = slot


cdef uint64_t set_generation(Core self, uint64_t id, bint process, uint32_t gen) except? 0:
    """Give live process (or monitor) `id` generation `gen` (a test hook). -> new id."""
    cdef uint32_t slot = <uint32_t>(id & LOW32)
    if process:
        if process_slot(self, id) == NIL:
            raise ValueError("no such live process")
        self.processes[slot].gen = gen
    else:
        if (slot >= self.monitors_top or self.monitors[slot].gen != <uint32_t>(id >> 32)
                or self.monitors[slot].flags & 3 == STATE_FREE):
            raise ValueError("no such monitor")
        self.monitors[slot].gen = gen
    return (<uint64_t>gen << 32) | slot
