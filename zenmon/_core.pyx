# cython: language_level=3, embedsignature=True
# cython: cdivision=True
"""zenmon's hot path: C-level tables, queues and the dispatcher's delivery loop.

Private. The public API is the Python layer in ``zenmon/*.py``; this module holds
state and loops. All ``Core`` methods that Python calls run inside a critical
section on the Core object: a no-op on GIL builds (where the GIL makes each call
atomic, since the loops call no Python code that could release it, apart from
``deque.append`` on inboxes), a per-object lock on free-threaded builds.
"""

cimport cython

import os
from collections import deque
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.tuple cimport PyTuple_New
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from "<endian.h>" nogil:
    uint64_t htole64(uint64_t)
    uint64_t le64toh(uint64_t)
    uint32_t htole32(uint32_t)
    uint32_t le32toh(uint32_t)


cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        PyObject *(*tp_alloc)(PyTypeObject *, Py_ssize_t) except NULL
    void PyObject_GC_UnTrack(void *op)
    int PyObject_GC_IsTracked(object op)
    void PyTuple_SET_ITEM(object tup, Py_ssize_t pos, object item)


# Unbound deque methods, called as functions: inside a critical section a call to a
# held object is fine, but Python attribute lookups are not (Cython warns about them).
cdef object deque_popleft = deque.popleft
cdef object deque_clear = deque.clear


cdef inline object new_down(object down_type, object ref, object pid, object reason):
    """A Down (a tuple subclass) built in one allocation, as tuple_subtype_new does.

    It is untracked by the cyclic GC: it holds a ref, a pid and a truncated reason,
    none of which can lead back to it, and a storm of a million tracked tuples
    would otherwise trigger full collections that cost more than the delivery.
    """
    cdef PyTypeObject *kind = <PyTypeObject *>down_type
    cdef PyObject *raw = kind.tp_alloc(kind, 3)
    cdef object down = <object>raw
    Py_XDECREF(raw)
    Py_INCREF(ref)
    PyTuple_SET_ITEM(down, 0, ref)
    Py_INCREF(pid)
    PyTuple_SET_ITEM(down, 1, pid)
    Py_INCREF(reason)
    PyTuple_SET_ITEM(down, 2, reason)
    PyObject_GC_UnTrack(raw)
    return down


cdef inline object new_batch(object batch_type, tuple downs):
    """A bulk message: ``batch_type(downs)`` built in C (no Python ``__new__`` runs).

    Untracked by the cyclic GC like a Down, and so is its tuple of Downs.
    """
    cdef PyTypeObject *kind
    cdef PyObject *raw
    if PyObject_GC_IsTracked(downs):
        PyObject_GC_UnTrack(<void *>downs)
    if batch_type is tuple:
        return downs
    kind = <PyTypeObject *>batch_type
    raw = kind.tp_alloc(kind, 1)
    batch = <object>raw
    Py_XDECREF(raw)
    Py_INCREF(downs)
    PyTuple_SET_ITEM(batch, 0, downs)
    PyObject_GC_UnTrack(raw)
    return batch


cdef inline void untrack_death(object death) noexcept:
    # a death (pid, reason, name_pid) is shared by the DOWNs of one target and holds
    # nothing that leads back to it: keep the cyclic GC off a storm of them
    if type(death) is tuple and PyObject_GC_IsTracked(death):
        PyObject_GC_UnTrack(<void *>death)


include "_pid.pxi"
include "_queues.pxi"


cdef uint64_t LOW32 = 0xFFFFFFFF
cdef uint64_t UNSUBSCRIBE = (<uint64_t>1) << OP_UNSUBSCRIBE_BIT
cdef uint64_t NAME_KEY = (<uint64_t>1) << NAME_KEY_BIT

#: Key bits exported for the Python layer (wire ops and name keys).
UNSUBSCRIBE_FLAG = UNSUBSCRIBE
NAME_KEY_FLAG = NAME_KEY
NO_SUBSCRIBER = 0        # Core.monitor: the watching process is dead
TARGET_DEAD = 1          # Core.monitor: the local target is dead (caller sends noproc)
LINK_DONE = 2            # Core.link_*: linked (or linked already)
CONNECTOR_CLOSED = 3     # Core.monitor / link_remote: that connector is closed (ask the node)


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


@cython.final
cdef class Core:
    """All of a node's tables, behind one critical section.

    Invariants:
    - a monitor record is FREE (on the free list), LIVE (in its target's list and its
      subscriber's list) or FIRED (in its subscriber's list, its DOWN queued once in
      ``downs``); freeing bumps its generation, so a queued DOWN or an old ref that
      names a freed record is recognised as stale;
    - a target record exists exactly while at least one LIVE monitor points at it;
      for a remote target (conn > 0) its creation queued a subscribe and its removal
      (other than by death) an unsubscribe on that connector's queue;
    - a process record is alive until ``process_exit``; its proxy list holds one
      subscription per (peer, peer key).
    """

    def __cinit__(self):
        self.monitors = NULL
        self.targets = NULL
        self.target_index = NULL
        self.processes = NULL
        self.subscriptions = NULL
        self.stamps = NULL
        self.conn_targets = NULL
        self.conn_cap = 0
        self.monitors_cap = self.monitors_top = self.monitors_live = 0
        self.targets_cap = self.targets_top = self.targets_live = 0
        self.processes_cap = self.processes_top = self.processes_live = 0
        self.subscriptions_cap = self.subscriptions_top = self.subscriptions_live = 0
        self.monitors_free = self.targets_free = self.processes_free = NIL
        self.subscriptions_free = NIL
        self.name_subscriptions_live = 0
        self.subscription_index = NULL
        self.subscription_index_mask = 0
        self.subscription_seed = 0
        self.peer_heads = NULL
        self.peer_heads_cap = 0
        self.stamp = 0
        self.target_index_mask = 0

    def __init__(self, down_type, batch_type=tuple):
        self.downs = DeathQueue()
        self.parked = {}
        self.parked_total = 0
        self.last_batch = {}
        self.connector_queues = [None]     # connector 0 is this node
        self.routes = {}
        self.deque_append = deque.append
        self.address = ""
        self.incarnation = 0
        self.batchers = []
        self.deliver = []
        self.owners = []
        self.exit_type = tuple
        self.link_queues = [None]          # conn 0 is this node: no link ops
        self.link_reasons = [None]
        self.link_kills = []
        if not (isinstance(down_type, type) and issubclass(down_type, tuple)
                and (<PyTypeObject *>down_type).tp_alloc is not NULL):
            raise TypeError("down_type must be a tuple subclass")
        self.down_type = down_type
        self.batch_type = batch_type
        self.target_index = <uint32_t *>PyMem_Malloc(1024 * sizeof(uint32_t))
        if self.target_index is NULL:
            raise MemoryError()
        for i in range(1024):
            self.target_index[i] = 0
        self.target_index_mask = 1023
        self.conn_targets = <uint64_t *>PyMem_Malloc(16 * sizeof(uint64_t))
        if self.conn_targets is NULL:
            raise MemoryError()
        self.conn_cap = 16
        self.conn_targets[0] = 0

    def __dealloc__(self):
        PyMem_Free(self.monitors)
        PyMem_Free(self.targets)
        PyMem_Free(self.target_index)
        PyMem_Free(self.processes)
        PyMem_Free(self.subscriptions)
        PyMem_Free(self.subscription_index)
        PyMem_Free(self.peer_heads)
        PyMem_Free(self.stamps)
        PyMem_Free(self.conn_targets)

    # ------------------------------------------------------------------ slabs

    cdef uint32_t monitor_alloc(self) except? <uint32_t>NIL:
        cdef uint32_t m
        if self.monitors_free != NIL:
            m = self.monitors_free
            self.monitors_free = self.monitors[m].t_next
        else:
            if self.monitors_top == self.monitors_cap:
                self.monitors = <MonitorRecord *>grow_slab(
                    self.monitors, sizeof(MonitorRecord), &self.monitors_cap)
            m = self.monitors_top
            self.monitors_top += 1
            self.monitors[m].gen = 1
        self.monitors_live += 1
        return m

    cdef void monitor_free(self, uint32_t m) noexcept:
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
        rec.t_next = self.monitors_free
        self.monitors_free = m

    cdef uint32_t target_find(self, uint32_t conn, uint64_t key) noexcept:
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

    cdef int target_index_grow(self) except -1:
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

    cdef uint32_t target_add(self, uint32_t conn, uint64_t key) except? <uint32_t>NIL:
        cdef uint32_t t
        cdef uint64_t i
        if (<uint64_t>self.targets_live + 1) * 2 > self.target_index_mask + 1:
            self.target_index_grow()
        if self.targets_free != NIL:
            t = self.targets_free
            self.targets_free = self.targets[t].head
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

    cdef void target_remove(self, uint32_t t) noexcept:
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
        self.targets[t].head = self.targets_free
        self.targets_free = t
        self.targets_live -= 1

    cdef void unlink_from_target(self, uint32_t m) noexcept:
        cdef MonitorRecord *rec = &self.monitors[m]
        if rec.t_prev != NIL:
            self.monitors[rec.t_prev].t_next = rec.t_next
        else:
            self.targets[rec.target].head = rec.t_next
        if rec.t_next != NIL:
            self.monitors[rec.t_next].t_prev = rec.t_prev

    cdef void link_to_subscriber(self, uint32_t m, uint32_t s) noexcept:
        cdef MonitorRecord *rec = &self.monitors[m]
        cdef ProcessRecord *proc = &self.processes[s]
        rec.s_prev = NIL
        rec.s_next = proc.watch_head
        if rec.s_next != NIL:
            self.monitors[rec.s_next].s_prev = m
        proc.watch_head = m

    cdef void unlink_from_subscriber(self, uint32_t m) noexcept:
        cdef MonitorRecord *rec = &self.monitors[m]
        if rec.s_prev != NIL:
            self.monitors[rec.s_prev].s_next = rec.s_next
        else:
            self.processes[rec.subscriber].watch_head = rec.s_next
        if rec.s_next != NIL:
            self.monitors[rec.s_next].s_prev = rec.s_prev

    cdef int release_target_if_empty(self, uint32_t t) except -1:
        cdef TargetRecord *target = &self.targets[t]
        if target.head != NIL:
            return 0
        if target.conn and target.conn < PEER_CONN:
            self.enqueue_connector(target.conn, target.key | UNSUBSCRIBE)
        self.target_remove(t)
        return 0

    cdef int enqueue_connector(self, uint32_t conn, uint64_t value) except -1:
        (<IdQueue>self.connector_queues[conn]).push(value)
        self.n_connector_enqueue += 1
        return 0

    cdef uint32_t process_slot(self, uint64_t pid_id) noexcept:
        cdef uint32_t slot = <uint32_t>(pid_id & LOW32)
        if (slot < self.processes_top and self.processes[slot].alive
                and self.processes[slot].gen == <uint32_t>(pid_id >> 32)):
            return slot
        return NIL

    cdef Py_ssize_t fire_target(self, uint32_t t, object death) except -1:
        """Queue one DOWN per monitor of target t (sharing `death`), then drop t."""
        cdef uint32_t m = self.targets[t].head, nxt
        cdef MonitorRecord *rec
        cdef Py_ssize_t n = 0
        untrack_death(death)
        while m != NIL:
            rec = &self.monitors[m]
            nxt = rec.t_next
            rec.flags = STATE_FIRED | (rec.flags & (FLAG_BY_NAME | FLAG_LINK))
            if rec.flags & FLAG_LINK:      # kept for unlink (see _links.pxi)
                rec.target = self.targets[t].conn
                rec.t_prev = <uint32_t>(self.targets[t].key >> 32)
                rec.t_next = <uint32_t>(self.targets[t].key & LOW32)
            self.downs.push((<uint64_t>rec.gen << 32) | m, death)
            n += 1
            m = nxt
        self.targets[t].head = NIL
        self.target_remove(t)
        self.n_enqueue += n
        self.n_batches += 1
        self.n_batch_length = n
        return n

    # -------------------------------------------------------------- processes

    def process_new(self, inbox, owner=None):
        """Allocate a live process slot whose DOWNs go to deque `inbox`. -> pid id.

        `owner` (the Process, settable later with ``set_owner``) is what the
        dispatcher returns for waking and what ``owner_of`` finds.
        """
        cdef uint32_t slot
        cdef ProcessRecord *proc
        with cython.critical_section(self):
            if type(inbox) is not deque:
                raise TypeError("a process inbox is a collections.deque")
            if self.processes_free != NIL:
                slot = self.processes_free
                self.processes_free = self.processes[slot].proxy_head
                self.deliver[slot] = inbox
                self.owners[slot] = owner
            else:
                if self.processes_top == self.processes_cap:
                    self.grow_processes()
                self.deliver.append(inbox)
                self.owners.append(owner)
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

    def set_owner(self, uint64_t pid_id, object owner):
        """Attach the Python object that stands for live process `pid_id`."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = self.process_slot(pid_id)
            if slot != NIL:
                self.owners[slot] = owner

    def owner_of(self, uint64_t pid_id):
        """The owner of live process `pid_id`, or None."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = self.process_slot(pid_id)
            return None if slot == NIL else self.owners[slot]

    def inbox_total(self):
        """Messages waiting in all live inboxes (summed in C: no Python loop)."""
        cdef Py_ssize_t total = 0
        with cython.critical_section(self):
            for inbox in self.deliver:
                if inbox is not None:
                    total += len(inbox)
        return total

    def set_bulk(self, uint64_t pid_id, bint bulk):
        """Deliver this process's DOWNs as one batch per dispatcher tick (or not)."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = self.process_slot(pid_id)
            if slot == NIL:
                return False
            if bulk:
                self.processes[slot].alive |= PROCESS_BULK
            else:
                self.processes[slot].alive &= ~PROCESS_BULK
            return True

    def is_alive(self, uint64_t pid_id):
        """True while the process with this id has not exited."""
        return self.process_slot(pid_id) != NIL

    def process_exit(self, uint64_t pid_id, object death, object reason):
        """Kill a process: fire monitors on it, drop its own, notify remote peers.

        `death` is (pid, reason, name_pid or None) shared by its DOWNs; `reason` the
        truncated reason for the batchers. Returns the number of DOWNs queued, or -1
        when the process was already dead.
        """
        cdef uint32_t slot, t, m, nxt, q
        cdef Py_ssize_t fired = 0
        cdef SubscriptionRecord *sub
        with cython.critical_section(self):
            slot = self.process_slot(pid_id)
            if slot == NIL:
                return -1
            if self.links_live:
                links_on_exit(self, slot, pid_id, reason)
            t = self.target_find(0, pid_id)
            if t != NIL:
                fired = self.fire_target(t, death)
            m = self.processes[slot].watch_head
            while m != NIL:
                nxt = self.monitors[m].s_next
                if self.monitors[m].flags & 3 == STATE_LIVE:
                    t = self.monitors[m].target
                    self.unlink_from_target(m)
                    self.release_target_if_empty(t)
                self.monitor_free(m)
                m = nxt
            self.processes[slot].watch_head = NIL
            q = self.processes[slot].proxy_head
            while q != NIL:
                sub = &self.subscriptions[q]
                nxt = sub.next
                (<Batcher>self.batchers[sub.peer]).push(sub.peer_key, reason)
                self.n_batcher_enqueue += 1
                self.subscription_free(q)
                q = nxt
            if self.processes[slot].alive & PROCESS_BULK:
                self.last_batch.pop(slot, None)
            if self.processes[slot].alive & PROCESS_PARKED:
                parked = self.parked.pop(slot)
                self.parked_total -= len(<DeathQueue>parked)
                self.n_delivered += len(<DeathQueue>parked)     # dropped: watcher dead
            self.processes[slot].alive = 0
            self.deliver[slot] = None
            self.owners[slot] = None
            self.processes_live -= 1
            self.processes[slot].gen += 1
            if self.processes[slot].gen == 0:
                # all generations used: retire the slot for the life of the node, so
                # a stale pid can never name a new process (16 bytes per 2**32 exits)
                self.n_retired += 1       # generation 0 is never handed out
            else:
                self.processes[slot].proxy_head = self.processes_free
                self.processes_free = slot
            return fired

    cdef int grow_processes(self) except -1:
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

    def _set_generation(self, uint64_t id, bint process, uint32_t gen):
        """Test hook: give live process (or monitor) `id` generation `gen`. -> new id.

        Lets tests reach the end of a slot's 2**32 generations without 2**32 exits.
        """
        cdef uint32_t slot = <uint32_t>(id & LOW32)
        with cython.critical_section(self):
            if process:
                if self.process_slot(id) == NIL:
                    raise ValueError("no such live process")
                self.processes[slot].gen = gen
            else:
                if (slot >= self.monitors_top or self.monitors[slot].gen != <uint32_t>(id >> 32)
                        or self.monitors[slot].flags & 3 == STATE_FREE):
                    raise ValueError("no such monitor")
                self.monitors[slot].gen = gen
            return (<uint64_t>gen << 32) | slot

    # --------------------------------------------------------------- monitors

    cdef uint64_t add_monitor(self, uint64_t subscriber, uint32_t conn, uint64_t key,
                              bint by_name) except? 2:
        cdef uint32_t s, t, m
        cdef MonitorRecord *rec
        s = self.process_slot(subscriber)
        if s == NIL:
            return NO_SUBSCRIBER
        if conn and self.connector_queues[conn] is None:
            return CONNECTOR_CLOSED
        t = self.target_find(conn, key)
        if t == NIL:
            # a watched local target is alive by invariant (its death removes the
            # target record), so liveness costs a lookup only for a first monitor
            if conn == 0 and self.process_slot(key) == NIL:
                return TARGET_DEAD
            t = self.target_add(conn, key)
            if conn:
                self.enqueue_connector(conn, key)
        m = self.monitor_alloc()
        rec = &self.monitors[m]
        rec.subscriber = s
        rec.target = t
        rec.flags = STATE_LIVE | (FLAG_BY_NAME if by_name else 0)
        rec.t_prev = NIL
        rec.t_next = self.targets[t].head
        if rec.t_next != NIL:
            self.monitors[rec.t_next].t_prev = m
        self.targets[t].head = m
        self.link_to_subscriber(m, s)
        self.n_monitor += 1
        return (<uint64_t>rec.gen << 32) | m

    def monitor(self, uint64_t subscriber, uint32_t conn, uint64_t key, bint by_name):
        """Record a monitor of (conn, key) held by `subscriber`. -> ref.

        Returns NO_SUBSCRIBER when the subscriber is dead, TARGET_DEAD when a local
        target (conn 0) is not alive and CONNECTOR_CLOSED when connector `conn` was
        closed (the caller asks the node for the current one); a first monitor of a
        remote target queues a subscribe on its connector.
        """
        with cython.critical_section(self):
            return self.add_monitor(subscriber, conn, key, by_name)

    def set_identity(self, str address not None, uint64_t incarnation):
        """This node's address and incarnation (for the monitor fast path)."""
        self.address = address
        self.incarnation = incarnation

    def route(self, str address not None, uint32_t conn, uint64_t incarnation):
        """Send monitors of pids (address, incarnation) straight to connector `conn`."""
        with cython.critical_section(self):
            self.routes[address] = (conn, incarnation)

    def unroute(self, str address not None, uint32_t conn):
        """Forget the route of `address` if it still leads to connector `conn`."""
        with cython.critical_section(self):
            route = self.routes.get(address)
            if route is not None and route[0] == conn:
                del self.routes[address]

    def monitor_pid(self, uint64_t subscriber, Pid target not None):
        """Fast path of ``Process.monitor(pid)``. -> ref, or 0: take the slow path.

        Handles a live local target and a remote target whose connector is known for
        the pid's incarnation; anything else (dead target, unknown node, another
        incarnation, dead subscriber) is left to the Python layer.
        """
        cdef uint32_t conn
        cdef uint64_t ref
        with cython.critical_section(self):
            if target.node is self.address or target.node == self.address:
                if target.incarnation != self.incarnation:
                    return 0
                conn = 0
            else:
                route = self.routes.get(target.node)
                if route is None or (<tuple>route)[1] != target.incarnation:
                    return 0
                conn = (<tuple>route)[0]
            ref = self.add_monitor(subscriber, conn, target.id, False)
            return ref if ref > CONNECTOR_CLOSED else 0

    def monitor_fired(self, uint64_t subscriber, object death, bint by_name):
        """Record a monitor whose DOWN is due at once (noproc, nodedown). -> ref or 0."""
        cdef uint32_t s, m
        cdef MonitorRecord *rec
        cdef uint64_t ref
        with cython.critical_section(self):
            s = self.process_slot(subscriber)
            if s == NIL:
                return NO_SUBSCRIBER
            m = self.monitor_alloc()
            rec = &self.monitors[m]
            rec.subscriber = s
            rec.target = NIL
            rec.flags = STATE_FIRED | (FLAG_BY_NAME if by_name else 0)
            self.link_to_subscriber(m, s)
            ref = (<uint64_t>rec.gen << 32) | m
            self.downs.push(ref, death)
            self.n_monitor += 1
            self.n_enqueue += 1
            return ref

    def demonitor(self, uint64_t subscriber, uint64_t ref):
        """Drop the monitor `ref` of `subscriber`; a queued DOWN for it is skipped.

        -> True when a monitor was removed, False for an unknown, stale or foreign ref.
        """
        cdef uint32_t m = <uint32_t>(ref & LOW32), t
        cdef MonitorRecord *rec
        with cython.critical_section(self):
            if m >= self.monitors_top:
                return False
            rec = &self.monitors[m]
            if rec.gen != <uint32_t>(ref >> 32) or rec.flags & 3 == STATE_FREE:
                return False
            if rec.flags & FLAG_LINK:          # links are undone by unlink only
                return False
            if rec.subscriber != self.process_slot(subscriber):
                return False
            if rec.flags & 3 == STATE_LIVE:
                t = rec.target
                self.unlink_from_target(m)
                self.release_target_if_empty(t)
            self.unlink_from_subscriber(m)
            self.monitor_free(m)
            self.n_demonitor += 1
            return True

    # ----------------------------------------------------------- remote deaths

    def fire_dead_summary(self, uint32_t conn, str node, uint64_t incarnation,
                          const unsigned char[::1] keys, list reasons,
                          const unsigned char[::1] indexes, dict names):
        """Turn a dead summary into DOWNs: one per local monitor of each dead key.

        keys: packed little-endian uint64; indexes: packed uint32 into `reasons` (or
        empty when there is one reason); names: name key -> (name, node) for keys
        that stand for registered names. Unknown keys (demonitored meanwhile) are
        skipped. Raises ValueError on inconsistent lengths or indexes.
        """
        cdef Py_ssize_t n = keys.shape[0] // 8, i, fired = 0
        cdef uint64_t key
        cdef uint32_t t, index
        cdef Py_ssize_t n_reasons = len(reasons)
        if keys.shape[0] % 8:
            raise ValueError("dead summary keys are not whole uint64s")
        if indexes.shape[0] and indexes.shape[0] != n * 4:
            raise ValueError("dead summary index count differs from key count")
        if n and n_reasons == 0:
            raise ValueError("dead summary without reasons")
        for i in range(indexes.shape[0] // 4):     # all checked first: all or nothing
            memcpy(&index, &indexes[i * 4], 4)
            if le32toh(index) >= n_reasons:
                raise ValueError("dead summary reason index out of range")
        with cython.critical_section(self):
            for i in range(n):
                memcpy(&key, &keys[i * 8], 8)
                key = le64toh(key)
                index = 0
                if indexes.shape[0]:
                    memcpy(&index, &indexes[i * 4], 4)
                    index = le32toh(index)
                if key & UNSUBSCRIBE:          # an unlink notice (see _links.pxi)
                    link_unlinked(self, conn, key & ~UNSUBSCRIBE, reasons[index])
                    continue
                t = self.target_find(conn, key)
                if t == NIL:
                    continue
                if key & NAME_KEY:
                    name_pid = names.get(key)
                    death = (name_pid, reasons[index], name_pid)
                else:
                    death = (Pid.new(node, incarnation, key), reasons[index], None)
                fired += self.fire_target(t, death)
        return fired

    def fire_connector(self, uint32_t conn, str node, uint64_t incarnation, dict names,
                       object reason, uint32_t start=0, Py_ssize_t max_downs=-1):
        """Fire every monitor on connector `conn` with `reason` (nodedown).

        Scans target slots from `start`; stops once `max_downs` DOWNs are queued (-1:
        no limit; a target is always fired whole) so a huge node death can be fired
        in chunks without holding the interpreter for long. The first chunk (start 0)
        also drops the connector's queued instructions: nobody is there to take them.
        -> (DOWNs queued, slot to resume from, or -1 when done).
        """
        cdef uint32_t t
        cdef uint64_t key
        cdef Py_ssize_t fired = 0
        with cython.critical_section(self):
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
                fired += self.fire_target(t, death)
        return fired, -1

    # -------------------------------------------------------------- connectors

    def connector_new(self):
        """Make an instruction queue for a new connector. -> its conn index (>= 1)."""
        cdef uint32_t conn
        cdef uint64_t *grown
        with cython.critical_section(self):
            conn = len(self.connector_queues)
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

    def connector_take(self, uint32_t conn, size_t max_n):
        """Pop up to max_n queued instructions as one packed little-endian buffer."""
        with cython.critical_section(self):
            queue = self.connector_queues[conn]
            return b"" if queue is None else (<IdQueue>queue).take_bytes(max_n)

    def connector_pending(self, uint32_t conn):
        """Number of instructions queued on connector `conn` (0 once closed)."""
        queue = self.connector_queues[conn]
        return 0 if queue is None else len(<IdQueue>queue)

    def connector_close(self, uint32_t conn):
        """Free connector `conn`'s queues if it holds nothing. -> whether it closed.

        Refused (False) while the connector has a target or a queued instruction or
        link op: a monitor that raced in must still be fired. Once closed, monitors
        and links through `conn` return CONNECTOR_CLOSED. The index is not reused (a
        fired link record may still name it), so a closed connector keeps four
        machine words, not its queues.
        """
        with cython.critical_section(self):
            queue = self.connector_queues[conn]
            if queue is None:
                return True
            if (self.conn_targets[conn] or len(<IdQueue>queue)
                    or connector_link_pending(self, conn)):
                return False
            self.connector_queues[conn] = None
            if conn < len(self.link_queues):
                self.link_queues[conn] = None
                self.link_reasons[conn] = None
            return True

    def connector_move_names(self, uint32_t old, uint32_t new, dict keys not None):
        """Move the monitors by name of connector `old` to connector `new`.

        `keys` maps each old name key to the new connector's key for the same name.
        A name target that `new` already has takes the monitors over; otherwise the
        target itself moves and its subscribe is queued on `new`. Monitors keep their
        refs. Used when `old` turned out to belong to a dead incarnation before any
        of these monitors reached it. -> number of targets moved.
        """
        cdef uint32_t t, into, m, last
        cdef uint64_t key, new_key
        cdef Py_ssize_t moved = 0
        with cython.critical_section(self):
            if self.connector_queues[new] is None:
                raise ValueError("connector_move_names into a closed connector")
            for t in range(self.targets_top):
                if self.targets[t].conn != old or not self.targets[t].key & NAME_KEY:
                    continue
                key = self.targets[t].key
                new_key = keys[key]
                into = self.target_find(new, new_key)
                if into == NIL:
                    into = self.target_add(new, new_key)
                    self.enqueue_connector(new, new_key)
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
                self.target_remove(t)
                moved += 1
        return moved

    def connector_targets(self, uint32_t conn):
        """Number of distinct targets watched on connector `conn`."""
        if conn >= len(self.connector_queues):
            raise IndexError("no such connector")
        return self.conn_targets[conn]

    # ------------------------------------------------------------------- proxy

    def batcher_new(self):
        """Make a Batcher for a new peer. -> (peer index, Batcher)."""
        cdef Batcher batcher = Batcher.__new__(Batcher)
        with cython.critical_section(self):
            self.batchers.append(batcher)
            return len(self.batchers) - 1, batcher

    # Subscriptions: one record per (peer, peer key), on two lists (its process's, for
    # process_exit, and its peer's, for drop_peer) and in a hash index by (peer, key),
    # so subscribe, unsubscribe and dropping a peer cost O(1) per subscription
    # touched, whatever one frame or one peer sends.

    cdef uint64_t subscription_hash(self, uint32_t peer, uint64_t peer_key) noexcept:
        return mix64(peer_key ^ self.subscription_seed
                     ^ (<uint64_t>peer * <uint64_t>0x9E3779B97F4A7C15))

    cdef uint32_t subscription_find(self, uint32_t peer, uint64_t peer_key) noexcept:
        cdef uint64_t mask = self.subscription_index_mask
        cdef uint64_t i
        cdef uint32_t q
        if self.subscription_index is NULL:
            return NIL
        i = self.subscription_hash(peer, peer_key) & mask
        while True:
            q = self.subscription_index[i]
            if q == 0:
                return NIL
            q -= 1
            if self.subscriptions[q].peer_key == peer_key and self.subscriptions[q].peer == peer:
                return q
            i = (i + 1) & mask

    cdef int subscription_index_grow(self) except -1:
        cdef uint64_t size = (self.subscription_index_mask + 1) * 2 if (
            self.subscription_index is not NULL) else 1024
        cdef uint64_t i, j
        cdef uint32_t q
        cdef uint32_t *fresh = <uint32_t *>PyMem_Malloc(size * sizeof(uint32_t))
        if fresh is NULL:
            raise MemoryError()
        for i in range(size):
            fresh[i] = 0
        if self.subscription_index is NULL:
            self.subscription_seed = int.from_bytes(os.urandom(8), "little")
        else:
            for i in range(self.subscription_index_mask + 1):
                q = self.subscription_index[i]
                if q:
                    j = self.subscription_hash(self.subscriptions[q - 1].peer,
                                               self.subscriptions[q - 1].peer_key) & (size - 1)
                    while fresh[j]:
                        j = (j + 1) & (size - 1)
                    fresh[j] = q
            PyMem_Free(self.subscription_index)
        self.subscription_index = fresh
        self.subscription_index_mask = size - 1
        return 0

    cdef int subscription_reserve(self, uint32_t peer) except -1:
        # room for one more record, its index entry, and a list head for `peer`
        cdef uint64_t cap, i
        cdef uint32_t *grown
        if (self.subscription_index is NULL or (<uint64_t>self.subscriptions_live + 1) * 2
                > self.subscription_index_mask + 1):
            self.subscription_index_grow()
        if peer >= self.peer_heads_cap:
            cap = max(<uint64_t>peer + 1, <uint64_t>self.peer_heads_cap * 2, <uint64_t>16)
            grown = <uint32_t *>PyMem_Realloc(self.peer_heads, cap * sizeof(uint32_t))
            if grown is NULL:
                raise MemoryError()
            for i in range(self.peer_heads_cap, cap):
                grown[i] = NIL
            self.peer_heads = grown
            self.peer_heads_cap = <uint32_t>cap
        if self.subscriptions_free == NIL and self.subscriptions_top == self.subscriptions_cap:
            self.subscriptions = <SubscriptionRecord *>grow_slab(
                self.subscriptions, sizeof(SubscriptionRecord), &self.subscriptions_cap)
        return 0

    cdef void subscription_unlink_process(self, uint32_t q) noexcept:
        cdef SubscriptionRecord *sub = &self.subscriptions[q]
        if sub.prev == NIL:
            self.processes[sub.slot].proxy_head = sub.next
        else:
            self.subscriptions[sub.prev].next = sub.next
        if sub.next != NIL:
            self.subscriptions[sub.next].prev = sub.prev

    cdef void subscription_free(self, uint32_t q) noexcept:
        # out of the index and the peer's list; the caller has dealt with the
        # process's list (unlinked it, or is discarding the whole list)
        cdef SubscriptionRecord *sub = &self.subscriptions[q]
        cdef uint64_t mask = self.subscription_index_mask
        cdef uint64_t i = self.subscription_hash(sub.peer, sub.peer_key) & mask
        cdef uint64_t j, k
        cdef uint32_t u
        while self.subscription_index[i] != q + 1:
            i = (i + 1) & mask
        j = i
        while True:     # backward-shift deletion, as target_remove
            j = (j + 1) & mask
            u = self.subscription_index[j]
            if u == 0:
                break
            k = self.subscription_hash(self.subscriptions[u - 1].peer,
                                       self.subscriptions[u - 1].peer_key) & mask
            if (j > i and (k <= i or k > j)) or (j < i and (k <= i and k > j)):
                self.subscription_index[i] = u
                i = j
        self.subscription_index[i] = 0
        if sub.peer_prev == NIL:
            self.peer_heads[sub.peer] = sub.peer_next
        else:
            self.subscriptions[sub.peer_prev].peer_next = sub.peer_next
        if sub.peer_next != NIL:
            self.subscriptions[sub.peer_next].peer_prev = sub.peer_prev
        if sub.peer_key & NAME_KEY:
            self.name_subscriptions_live -= 1
        sub.peer = NIL
        sub.next = self.subscriptions_free
        self.subscriptions_free = q
        self.subscriptions_live -= 1

    def subscribe(self, uint32_t peer, uint64_t peer_key, uint64_t pid_id):
        """Subscribe `peer` to local process `pid_id` under its key. Idempotent.

        A (peer, key) pair names one subscription: subscribing it again (to any
        process) keeps the first. -> False when the process is dead (the caller
        answers noproc).
        """
        cdef uint32_t slot, q
        cdef uint64_t i
        cdef SubscriptionRecord *sub
        if peer == NIL:
            raise ValueError("no such peer")
        with cython.critical_section(self):
            slot = self.process_slot(pid_id)
            if slot == NIL:
                return False
            if self.subscription_find(peer, peer_key) != NIL:
                return True
            self.subscription_reserve(peer)
            if self.subscriptions_free != NIL:
                q = self.subscriptions_free
                self.subscriptions_free = self.subscriptions[q].next
            else:
                q = self.subscriptions_top
                self.subscriptions_top += 1
            sub = &self.subscriptions[q]
            sub.peer = peer
            sub.peer_key = peer_key
            sub.slot = slot
            sub.prev = NIL
            sub.next = self.processes[slot].proxy_head
            if sub.next != NIL:
                self.subscriptions[sub.next].prev = q
            self.processes[slot].proxy_head = q
            sub.peer_prev = NIL
            sub.peer_next = self.peer_heads[peer]
            if sub.peer_next != NIL:
                self.subscriptions[sub.peer_next].peer_prev = q
            self.peer_heads[peer] = q
            i = self.subscription_hash(peer, peer_key) & self.subscription_index_mask
            while self.subscription_index[i]:
                i = (i + 1) & self.subscription_index_mask
            self.subscription_index[i] = q + 1
            self.subscriptions_live += 1
            if peer_key & NAME_KEY:
                self.name_subscriptions_live += 1
            return True

    def subscribe_many(self, uint32_t peer, const unsigned char[::1] keys, Batcher noproc,
                       object noproc_reason, object resolve_name=None):
        """Apply a packed batch of subscribe/unsubscribe instructions for `peer`, in order.

        A subscribe to a dead process queues a `noproc_reason` certificate on `noproc`.
        Keys with the name bit are resolved by ``resolve_name(key)`` (-> the pid id of
        the process registered under the name the batch gave that key, or None:
        noproc); without `resolve_name` they are skipped. Each instruction costs O(1).
        -> number of instructions applied.
        """
        cdef Py_ssize_t n = keys.shape[0] // 8, i
        cdef uint64_t key
        if keys.shape[0] % 8:
            raise ValueError("subscription batch is not whole uint64s")
        for i in range(n):
            memcpy(&key, &keys[i * 8], 8)
            key = le64toh(key)
            if key & NAME_KEY:
                if resolve_name is None:
                    continue
                if key & UNSUBSCRIBE:
                    self.unsubscribe(peer, key & ~UNSUBSCRIBE, 0)
                    continue
                pid_id = resolve_name(key)
                if pid_id is None or not self.subscribe(peer, key, pid_id):
                    noproc.push(key, noproc_reason)
            elif key & UNSUBSCRIBE:
                self.unsubscribe(peer, key & ~UNSUBSCRIBE, key & ~UNSUBSCRIBE)
            elif not self.subscribe(peer, key, key):
                noproc.push(key, noproc_reason)
        return n

    def unsubscribe(self, uint32_t peer, uint64_t peer_key, uint64_t pid_id=0):
        """Drop `peer`'s subscription under `peer_key` (`pid_id` is not needed: the
        key names it). -> True if removed."""
        cdef uint32_t q
        with cython.critical_section(self):
            q = self.subscription_find(peer, peer_key)
            if q == NIL:
                return False
            self.subscription_unlink_process(q)
            self.subscription_free(q)
            return True

    def has_subscription(self, uint32_t peer, uint64_t peer_key):
        """True while `peer` holds a subscription under `peer_key`."""
        with cython.critical_section(self):
            return self.subscription_find(peer, peer_key) != NIL

    def name_subscribers(self):
        """Subscriptions held under name keys (a gauge: returns to 0 when unused)."""
        return self.name_subscriptions_live

    def has_target(self, uint32_t conn, uint64_t key):
        """True while some live monitor on connector `conn` watches `key`."""
        with cython.critical_section(self):
            return self.target_find(conn, key) != NIL

    def drop_peer(self, uint32_t peer):
        """Drop every subscription of `peer` and its queued certificates. -> count.

        Walks only that peer's own subscriptions (never every process).
        """
        cdef uint32_t q
        cdef Py_ssize_t n = 0
        with cython.critical_section(self):
            (<Batcher>self.batchers[peer]).clear()
            if peer >= self.peer_heads_cap:
                return 0
            q = self.peer_heads[peer]
            while q != NIL:
                self.subscription_unlink_process(q)
                self.subscription_free(q)     # moves the peer's head on
                n += 1
                q = self.peer_heads[peer]
        return n

    # -------------------------------------------------------------- dispatcher

    def dispatch(self, Py_ssize_t budget, Py_ssize_t max_backlog=0):
        """Hand up to `budget` queued DOWNs to their watchers' inboxes.

        Stale entries (demonitored, or watcher dead) are dropped without using the
        budget. With `max_backlog` > 0 (adaptive pacing) an inbox holding that many
        messages (a bulk watcher: one batch of that many DOWNs) gets nothing more:
        its entries are *parked* on a queue of their own and served first, in order,
        once it has room, so each entry is moved at most once and a call looks at no
        more than PARK_LOOK_LIMIT entries of the shared queue. Bulk processes receive
        one ``batch_type(downs)`` per call. -> owners of the inboxes that received
        something (once each).

        Safe against every inbox state: any allocation here may run a garbage
        collection, hence Python code, hence another thread, which may exit a
        watcher or demonitor an entry. So an entry's monitor is freed only in the
        same step, free of allocations, that appends its DOWN (or its bulk batch) to
        the inbox, after its liveness was checked again; an entry that went stale
        meanwhile is dropped, and one watcher's exit costs no other watcher anything.
        """
        cdef list touched = []
        cdef dict batches = {}         # bulk slot -> [refs, deaths] of its FIRED entries
        cdef Py_ssize_t handed = 0, looked = 0, look_limit, room
        cdef QueuedDown q
        cdef uint32_t s
        cdef DeathQueue downs = self.downs
        cdef DeathQueue parked
        with cython.critical_section(self):
            self.stamp += 1
            if not max_backlog and self.last_batch:
                self.last_batch.clear()      # left adaptive pacing: nothing to track
            if self.parked_total:        # parked entries are older: serve them first
                for slot in list(self.parked):
                    if handed >= budget:
                        break
                    s = slot
                    parked = self.parked.get(slot)
                    if parked is None:
                        continue               # its watcher died meanwhile
                    room = budget - handed
                    if max_backlog:
                        room = min(room, self.room_in(s, batches, max_backlog))
                    while room > 0 and parked.length and self.parked.get(slot) is parked:
                        q = parked.pop()
                        self.parked_total -= 1
                        self.n_delivered += 1
                        if self.live_subscriber(q.ref) == s:
                            if self.hand_down(s, q.ref, <object>q.death, batches, touched):
                                room -= 1
                                handed += 1
                        Py_XDECREF(<PyObject *>q.death)
                    if not parked.length and self.parked.get(slot) is parked:
                        del self.parked[slot]
                        self.processes[s].alive &= ~PROCESS_PARKED
            look_limit = downs.length
            if max_backlog and look_limit > PARK_LOOK_LIMIT:
                look_limit = PARK_LOOK_LIMIT
            while downs.length and handed < budget and looked < look_limit:
                q = downs.pop()
                looked += 1
                s = self.live_subscriber(q.ref)
                if s != NIL and max_backlog and (
                        self.processes[s].alive & PROCESS_PARKED
                        or not self.room_in(s, batches, max_backlog)):
                    if self.live_subscriber(q.ref) == s:    # room_in may have let
                        self.park(s, q)                     # another thread run
                        continue
                    s = NIL
                self.n_delivered += 1
                if s != NIL and self.hand_down(s, q.ref, <object>q.death, batches, touched):
                    handed += 1
                Py_XDECREF(<PyObject *>q.death)
            for slot, pending in batches.items():
                self.deliver_batch(slot, <list>(<list>pending)[0], <list>(<list>pending)[1],
                                   max_backlog > 0, touched)
            if ZENMON_DEBUG_BUILD:
                check_core(self)
        return touched

    def check_invariants(self):
        """Raise AssertionError naming the first broken invariant of the tables.

        O(table size): for tests and the debug build (which runs it after every
        dispatch tick and every ``sizes()``), not for production paths.
        """
        with cython.critical_section(self):
            check_core(self)

    def pending(self):
        """DOWNs queued and not yet handed to an inbox (shared queue plus parked)."""
        return self.downs.length + self.parked_total

    cdef Py_ssize_t room_in(self, uint32_t s, dict batches,
                            Py_ssize_t max_backlog) except -1:
        """DOWNs watcher `s`'s inbox may still take under adaptive pacing.

        Room for ``max_backlog`` messages. A bulk watcher has at most one batch of at
        most ``max_backlog`` DOWNs in its inbox: no room while its last batch has not
        been taken (looked for by identity among at most ``max_backlog`` messages).
        """
        cdef object inbox = self.deliver[s]
        cdef Py_ssize_t queued
        if inbox is None:
            return 0
        queued = len(inbox)
        if queued >= max_backlog:
            return 0
        if not self.processes[s].alive & PROCESS_BULK:
            return max_backlog - queued
        pending = batches.get(s)
        if pending is not None:
            return max_backlog - len(<list>(<list>pending)[0])
        last = self.last_batch.get(s)
        if last is not None:
            for message in inbox:
                if message is last:
                    return 0
            self.last_batch.pop(s, None)
        return max_backlog

    cdef uint32_t live_subscriber(self, uint64_t ref) noexcept:
        """The watcher slot of a queued DOWN still to deliver; NIL when it is stale."""
        cdef uint32_t m = <uint32_t>(ref & LOW32)
        cdef MonitorRecord *rec
        if m >= self.monitors_top:
            return NIL
        rec = &self.monitors[m]
        if rec.gen != <uint32_t>(ref >> 32) or rec.flags & 3 != STATE_FIRED:
            return NIL
        return rec.subscriber

    cdef object down_of(self, uint64_t ref, object death):
        """The Down for queued entry `ref` (allocates: other threads may run)."""
        cdef uint32_t m = <uint32_t>(ref & LOW32)
        pid = (<tuple>death)[0]
        if self.monitors[m].flags & FLAG_BY_NAME and (<tuple>death)[2] is not None:
            pid = (<tuple>death)[2]
        return new_down(self.down_type, ref, pid, (<tuple>death)[1])

    cdef void release_fired(self, uint32_t s, uint64_t ref) noexcept:
        """Free the FIRED monitor `ref` of watcher `s` once its DOWN is in the inbox."""
        cdef uint32_t m = <uint32_t>(ref & LOW32)
        self.unlink_from_subscriber(m)
        self.monitor_free(m)
        self.n_processed += 1

    cdef int touch(self, uint32_t s, list touched) except -1:
        """Something reached watcher `s`'s inbox: list its owner once per tick."""
        if self.stamps[s] != self.stamp:
            self.stamps[s] = self.stamp
            touched.append(self.owners[s])
        return 0

    cdef bint hand_down(self, uint32_t s, uint64_t ref, object death, dict batches,
                        list touched) except -1:
        """Deliver live queued entry `ref` of watcher `s`. -> False when it went stale.

        A bulk watcher's entry is only collected here (its monitor stays FIRED, so a
        demonitor still finds it); ``deliver_batch`` hands the batch over.
        """
        cdef list pending
        if self.monitors[<uint32_t>(ref & LOW32)].flags & FLAG_LINK:
            return hand_link(self, s, ref, death, touched)     # an exit signal
        if self.processes[s].alive & PROCESS_BULK:
            pending = batches.get(s)
            if pending is None:
                pending = [[], []]
                batches[s] = pending
            (<list>pending[0]).append(ref)
            (<list>pending[1]).append(death)
            return True
        down = self.down_of(ref, death)
        # allocations done: from here to the append nothing can run other Python code
        if self.live_subscriber(ref) != s:
            return False
        self.release_fired(s, ref)
        self.deque_append(self.deliver[s], down)
        self.touch(s, touched)
        return True

    cdef int deliver_batch(self, uint32_t s, list refs, list deaths, bint track_last,
                           list touched) except -1:
        """Hand bulk watcher `s` one batch of its collected entries that are still live.

        The Downs and the batch are built first (allocations: other threads may run);
        then, with no allocation in between, every entry is checked again, and the
        monitors are freed and the batch appended together. An entry that went stale
        meanwhile makes the batch be built again without it.
        """
        cdef Py_ssize_t i, n, k
        cdef tuple downs
        cdef bint stale
        while True:
            n = len(refs)
            k = 0
            for i in range(n):
                if self.live_subscriber(<uint64_t>refs[i]) == s:
                    refs[k] = refs[i]
                    deaths[k] = deaths[i]
                    k += 1
            del refs[k:]
            del deaths[k:]
            if not k:
                return 0
            downs = PyTuple_New(k)
            for i in range(k):
                down = self.down_of(<uint64_t>refs[i], deaths[i])
                Py_INCREF(down)
                PyTuple_SET_ITEM(downs, i, down)
            batch = new_batch(self.batch_type, downs)
            stale = False
            for i in range(k):
                if self.live_subscriber(<uint64_t>refs[i]) != s:
                    stale = True
                    break
            if stale:
                continue
            for i in range(k):
                self.release_fired(s, <uint64_t>refs[i])
            self.deque_append(self.deliver[s], batch)
            if track_last:
                self.last_batch[s] = batch
            self.touch(s, touched)
            return 0

    cdef int park(self, uint32_t s, QueuedDown q) except -1:
        """Move queued entry `q` (and its reference) to watcher `s`'s parked queue."""
        parked = self.parked.get(s)
        if parked is None:
            parked = DeathQueue()
            self.parked[s] = parked
            self.processes[s].alive |= PROCESS_PARKED
        (<DeathQueue>parked).push_owned(q.ref, q.death)
        self.parked_total += 1
        return 0

    def flush(self, object inbox not None, uint64_t ref):
        """Remove the DOWN for `ref` from `inbox`: a Down, or one inside a batch.

        In place and in order (a batch is replaced by one without that DOWN). The
        scan and the removal run with no allocation in between, so no other thread
        appends or takes a message meanwhile; rebuilding a batch allocates, so the
        batch is found again by identity afterwards (and the scan repeated if another
        thread changed it). -> True when a DOWN was removed.
        """
        cdef Py_ssize_t i, j, n
        cdef tuple downs, kept
        cdef object found, replacement
        cdef object ref_obj = ref
        cdef bint in_batch
        while True:
            found = None
            in_batch = False
            i = 0
            for message in inbox:       # no Python code runs in this loop
                if type(message) is self.down_type:
                    item = (<tuple>message)[0]
                    if type(item) is int and item == ref_obj:
                        found = message
                        break
                elif type(message) is self.batch_type and self.batch_type is not tuple:
                    downs = (<tuple>message)[0]
                    for down in downs:
                        if type(down) is self.down_type:
                            item = (<tuple>down)[0]
                            if type(item) is int and item == ref_obj:
                                found = message
                                in_batch = True
                                break
                    if in_batch:
                        break
                i += 1
            if found is None:
                return False
            if not in_batch:
                del inbox[i]
                return True
            downs = (<tuple>found)[0]
            n = len(downs)
            kept = PyTuple_New(n - 1)
            j = 0
            for down in downs:
                item = (<tuple>down)[0]
                if not (type(item) is int and item == ref_obj) and j < n - 1:
                    Py_INCREF(down)
                    PyTuple_SET_ITEM(kept, j, down)
                    j += 1
            replacement = new_batch(self.batch_type, kept) if n > 1 else None
            # allocations done: find the batch again, it may have moved or gone
            i = 0
            for message in inbox:
                if message is found:
                    break
                i += 1
            else:
                continue
            if replacement is None:
                del inbox[i]
            else:
                inbox[i] = replacement
            return True

    # ----------------------------------------------------------------- metrics

    def sizes(self):
        """Table sizes -> dict (references, targets, processes, subscribers, queues)."""
        cdef Py_ssize_t pending = 0, batched = 0, closed = 0
        if ZENMON_DEBUG_BUILD:
            check_core(self)
        for queue in self.connector_queues[1:]:
            if queue is not None:
                pending += len(<IdQueue>queue)
            else:
                closed += 1
        for batcher in self.batchers:
            batched += len(<Batcher>batcher)
        return {
            "references": self.monitors_live,
            "targets": self.targets_live,
            "processes": self.processes_live,
            "subscribers": self.subscriptions_live,
            "downs_queued": self.downs.length + self.parked_total,
            "connector_queued": pending,
            "connectors_open": len(self.connector_queues) - 1 - closed,
            "batcher_queued": batched,
        }

    def counters(self):
        """Monotonic counters -> dict."""
        return {
            "monitor": self.n_monitor,
            "demonitor": self.n_demonitor,
            "enqueue": self.n_enqueue,
            "batch_length": self.n_batch_length,
            "connector_enqueue": self.n_connector_enqueue,
            "delivered": self.n_delivered,
            "processed": self.n_processed,
            "batcher_enqueue": self.n_batcher_enqueue,
            "retired_slots": self.n_retired,
        }

    def memory_bytes(self):
        """Bytes held by the C tables (capacity, not just the used part)."""
        return (self.monitors_cap * sizeof(MonitorRecord)
                + self.targets_cap * sizeof(TargetRecord)
                + (self.target_index_mask + 1) * sizeof(uint32_t)
                + self.processes_cap * (sizeof(ProcessRecord) + sizeof(uint32_t))
                + self.subscriptions_cap * sizeof(SubscriptionRecord)
                + (self.subscription_index_mask + 1 if self.subscription_index is not NULL
                   else 0) * sizeof(uint32_t)
                + self.peer_heads_cap * sizeof(uint32_t)
                + self.downs.capacity * sizeof(QueuedDown)
                + sum([(<DeathQueue>q).capacity for q in self.parked.values()])
                * sizeof(QueuedDown))


include "_debug.pxi"
include "_links.pxi"
