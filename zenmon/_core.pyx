# cython: language_level=3, embedsignature=True
# cython: cdivision=True
"""zenmon's hot path: C-level tables, queues and the dispatcher's delivery loop.

Private. The public API is the Python layer in ``zenmon/*.py``; this module holds
state and loops. ``Core`` below is a thin facade: each method that Python calls
takes the critical section and calls the functions of one room in ``_cy/``
(Cython cannot include methods into a class body, so a room's functions take the
Core as first argument; ``_core.pxd`` declares them all, room by room):

- ``_cy/pid.pxi``: ``Pid``, a process identity;
- ``_cy/queues.pxi``: ring buffers (connector instructions, queued DOWNs, death
  certificates);
- ``_cy/tables.pxi``: the monitor, target and process slabs, the target index, free
  lists, and the monitor and process life cycles;
- ``_cy/connectors.pxi``: the local side's connectors: instruction queues, routes,
  dead summaries and lost nodes turned into DOWNs;
- ``_cy/subscriptions.pxi``: the proxy side: peers' subscriptions, death certificates;
- ``_cy/delivery.pxi``: the dispatcher's loop: DOWNs into inboxes, bulk batches,
  parking, flush;
- ``_cy/links.pxi``: links (and the module functions ``zenmon/links.py`` calls);
- ``_cy/debug.pxi``: the invariant checks (run throughout by a ``ZENMON_DEBUG=1`` build).

The critical section is a no-op on GIL builds (where the GIL makes each call atomic,
since the loops call no Python code that could release it, apart from
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


# Unbound deque methods, called as functions: inside a critical section a call to a
# held object is fine, but Python attribute lookups are not (Cython warns about them).
cdef object deque_popleft = deque.popleft
cdef object deque_clear = deque.clear

cdef uint64_t LOW32 = 0xFFFFFFFF
cdef uint64_t UNSUBSCRIBE = (<uint64_t>1) << OP_UNSUBSCRIBE_BIT
cdef uint64_t NAME_KEY = (<uint64_t>1) << NAME_KEY_BIT

#: Key bits exported for the Python layer (wire ops and name keys).
UNSUBSCRIBE_FLAG = UNSUBSCRIBE
NAME_KEY_FLAG = NAME_KEY
#: Results of Core.monitor and the link functions that are not a ref.
NO_SUBSCRIBER = RESULT_NO_SUBSCRIBER        # the watching process is dead
TARGET_DEAD = RESULT_TARGET_DEAD            # the local target is dead (caller sends noproc)
LINK_DONE = RESULT_LINK_DONE                # linked (or linked already)
CONNECTOR_CLOSED = RESULT_CONNECTOR_CLOSED  # that connector is closed (ask the node)


include "_cy/pid.pxi"
include "_cy/queues.pxi"
include "_cy/tables.pxi"
include "_cy/connectors.pxi"
include "_cy/subscriptions.pxi"
include "_cy/delivery.pxi"
include "_cy/links.pxi"
include "_cy/debug.pxi"


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
        # seeded here, never inside a table operation: os.urandom releases the GIL,
        # and another thread must never find the tables half changed
        self.subscription_seed = int.from_bytes(os.urandom(8), "little")
        self.peer_heads = NULL
        self.peer_heads_cap = 0
        self.stamp = 0
        self.target_index_mask = 0

    def __init__(self, down_type, batch_type=tuple):
        self.downs = DownQueue()
        self.parked = {}
        self.parked_total = 0
        self.last_batch = {}
        self.connector_queues = [None]     # connector 0 is this node
        self.routes = {}
        self.deque_append = deque.append
        self.address = ""
        self.incarnation = 0
        self.certificate_queues = []
        self.inboxes = []
        self.process_objects = []
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

    # ------------------------------------------------ processes (tables.pxi)

    def process_new(self, inbox, owner=None):
        """Allocate a live process slot whose DOWNs go to deque `inbox`. -> pid id.

        `owner` (the Process, settable later with ``set_owner``) is what the
        dispatcher returns for waking and what ``owner_of`` finds.
        """
        if type(inbox) is not deque:
            raise TypeError("a process inbox is a collections.deque")
        with cython.critical_section(self):
            return process_alloc(self, inbox, owner)

    def set_owner(self, uint64_t pid_id, object owner):
        """Attach the Python object that stands for live process `pid_id`."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = process_slot(self, pid_id)
            if slot != NIL:
                self.process_objects[slot] = owner

    def owner_of(self, uint64_t pid_id):
        """The owner of live process `pid_id`, or None."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = process_slot(self, pid_id)
            return None if slot == NIL else self.process_objects[slot]

    def set_bulk(self, uint64_t pid_id, bint bulk):
        """Deliver this process's DOWNs as one batch per dispatcher tick (or not)."""
        cdef uint32_t slot
        with cython.critical_section(self):
            slot = process_slot(self, pid_id)
            if slot == NIL:
                return False
            if bulk:
                self.processes[slot].alive |= PROCESS_BULK
            else:
                self.processes[slot].alive &= ~PROCESS_BULK
            return True

    def is_alive(self, uint64_t pid_id):
        """True while the process with this id has not exited."""
        return process_slot(self, pid_id) != NIL

    def process_exit(self, uint64_t pid_id, object death, object reason):
        """Kill a process: fire monitors on it, drop its own, notify remote peers.

        `death` is (pid, reason, name_pid or None) shared by its DOWNs; `reason` the
        truncated reason for the peers' death certificates. Returns the number of DOWNs
        queued, or -1 when the process was already dead.
        """
        cdef uint32_t slot, t
        cdef Py_ssize_t fired = 0
        cdef object _inbox, _owner, _batch, _parked
        with cython.critical_section(self):
            slot = process_slot(self, pid_id)
            if slot == NIL:
                return -1
            # the slot's Python references are released when this call returns, with
            # the tables consistent: freeing them can run arbitrary code (finalizers,
            # weakref callbacks) and so let another thread in (no allocation here)
            _inbox = self.inboxes[slot]
            _owner = self.process_objects[slot]
            _batch = self.last_batch.get(slot)
            _parked = self.parked.get(slot)
            if self.links_live:
                links_on_exit(self, slot, pid_id, reason)    # exit signals out
            t = target_find(self, 0, pid_id)
            if t != NIL:
                fired = fire_target(self, t, death)         # monitors on it fire
            drop_watches(self, slot)                         # its own monitors go
            certify_death(self, slot, reason)                # peers' certificates
            forget_deliveries(self, slot)                    # parked DOWNs dropped
            process_free(self, slot)
            return fired

    def _set_generation(self, uint64_t id, bint process, uint32_t gen):
        """Test hook: give live process (or monitor) `id` generation `gen`. -> new id.

        Lets tests reach the end of a slot's 2**32 generations without 2**32 exits.
        """
        with cython.critical_section(self):
            return set_generation(self, id, process, gen)

    # ------------------------------------------------- monitors (tables.pxi)

    def monitor(self, uint64_t subscriber, uint32_t conn, uint64_t key, bint by_name):
        """Record a monitor of (conn, key) held by `subscriber`. -> ref.

        Returns NO_SUBSCRIBER when the subscriber is dead, TARGET_DEAD when a local
        target (conn 0) is not alive and CONNECTOR_CLOSED when connector `conn` was
        closed (the caller asks the node for the current one); a first monitor of a
        remote target queues a subscribe on its connector.
        """
        with cython.critical_section(self):
            return add_monitor(self, subscriber, conn, key, by_name)

    def monitor_pid(self, uint64_t subscriber, Pid target not None):
        """Fast path of ``Process.monitor(pid)``. -> ref, or 0: take the slow path.

        Handles a live local target and a remote target whose connector is known for
        the pid's incarnation; anything else (dead target, unknown node, another
        incarnation, dead subscriber) is left to the Python layer.
        """
        cdef uint32_t conn
        cdef uint64_t ref
        with cython.critical_section(self):
            conn = route_of(self, target)
            if conn == NIL:
                return 0
            ref = add_monitor(self, subscriber, conn, target.id, False)
            return ref if ref > RESULT_CONNECTOR_CLOSED else 0

    def monitor_fired(self, uint64_t subscriber, object death, bint by_name):
        """Record a monitor whose DOWN is due at once (noproc, nodedown). -> ref or 0."""
        with cython.critical_section(self):
            return add_fired_monitor(self, subscriber, death, by_name)

    def demonitor(self, uint64_t subscriber, uint64_t ref):
        """Drop the monitor `ref` of `subscriber`; a queued DOWN for it is skipped.

        -> True when a monitor was removed, False for an unknown, stale or foreign ref.
        """
        with cython.critical_section(self):
            return remove_monitor(self, subscriber, ref)

    def has_target(self, uint32_t conn, uint64_t key):
        """True while some live monitor on connector `conn` watches `key`."""
        with cython.critical_section(self):
            return target_find(self, conn, key) != NIL

    # ---------------------------------------------- connectors (connectors.pxi)

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

    def connector_new(self):
        """Make an instruction queue for a new connector. -> its conn index (>= 1)."""
        with cython.critical_section(self):
            return connector_open(self)

    def connector_take(self, uint32_t conn, size_t max_n):
        """Pop up to max_n queued instructions as one packed little-endian buffer."""
        with cython.critical_section(self):
            queue = self.connector_queues[conn]
            return b"" if queue is None else (<IdQueue>queue).take_bytes(max_n)

    def connector_pending(self, uint32_t conn):
        """Number of instructions queued on connector `conn` (0 once closed)."""
        queue = self.connector_queues[conn]
        return 0 if queue is None else len(<IdQueue>queue)

    def connector_targets(self, uint32_t conn):
        """Number of distinct targets watched on connector `conn`."""
        if conn >= len(self.connector_queues):
            raise IndexError("no such connector")
        return self.conn_targets[conn]

    def connector_close(self, uint32_t conn):
        """Free connector `conn`'s queues if it holds nothing. -> whether it closed.

        Refused (False) while the connector has a target or a queued instruction or
        link op: a monitor that raced in must still be fired. Once closed, monitors
        and links through `conn` return CONNECTOR_CLOSED. The index is not reused (a
        fired link record may still name it), so a closed connector keeps four
        machine words, not its queues.
        """
        with cython.critical_section(self):
            return connector_try_close(self, conn)

    def connector_move_names(self, uint32_t old, uint32_t new, dict keys not None):
        """Move the monitors by name of connector `old` to connector `new`.

        `keys` maps each old name key to the new connector's key for the same name.
        A name target that `new` already has takes the monitors over; otherwise the
        target itself moves and its subscribe is queued on `new`. Monitors keep their
        refs. Used when `old` turned out to belong to a dead incarnation before any
        of these monitors reached it. -> number of targets moved.
        """
        with cython.critical_section(self):
            return move_name_targets(self, old, new, keys)

    def fire_dead_summary(self, uint32_t conn, str node, uint64_t incarnation,
                          const unsigned char[::1] keys, list reasons,
                          const unsigned char[::1] indexes, dict names):
        """Turn a dead summary into DOWNs: one per local monitor of each dead key.

        keys: packed little-endian uint64; indexes: packed uint32 into `reasons` (or
        empty when there is one reason); names: name key -> (name, node) for keys
        that stand for registered names. Unknown keys (demonitored meanwhile) are
        skipped. Raises ValueError on inconsistent lengths or indexes.
        """
        cdef Py_ssize_t n = keys.shape[0] // 8, i
        cdef uint32_t index
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
            return fire_summary(self, conn, node, incarnation, keys, reasons, indexes,
                                names)

    def fire_connector(self, uint32_t conn, str node, uint64_t incarnation, dict names,
                       object reason, uint32_t start=0, Py_ssize_t max_downs=-1):
        """Fire every monitor on connector `conn` with `reason` (nodedown).

        Scans target slots from `start`; stops once `max_downs` DOWNs are queued (-1:
        no limit; a target is always fired whole) so a huge node death can be fired
        in chunks without holding the interpreter for long. The first chunk (start 0)
        also drops the connector's queued instructions: nobody is there to take them.
        -> (DOWNs queued, slot to resume from, or -1 when done).
        """
        with cython.critical_section(self):
            return fire_connector_chunk(self, conn, node, incarnation, names, reason,
                                        start, max_downs)

    # --------------------------------------- proxy side (subscriptions.pxi)

    def batcher_new(self):
        """A new peer's batcher queue. -> (peer index, its CertificateQueue)."""
        cdef CertificateQueue certificates = CertificateQueue.__new__(CertificateQueue)
        with cython.critical_section(self):
            self.certificate_queues.append(certificates)
            return len(self.certificate_queues) - 1, certificates

    def subscribe(self, uint32_t peer, uint64_t peer_key, uint64_t pid_id):
        """Subscribe `peer` to local process `pid_id` under its key. Idempotent.

        A (peer, key) pair names one subscription: subscribing it again (to any
        process) keeps the first. -> False when the process is dead (the caller
        answers noproc).
        """
        if peer == NIL:
            raise ValueError("no such peer")
        with cython.critical_section(self):
            return subscription_add(self, peer, peer_key, pid_id)

    def subscribe_many(self, uint32_t peer, const unsigned char[::1] keys,
                       CertificateQueue noproc, object noproc_reason, object resolve_name=None):
        """Apply a packed batch of subscribe/unsubscribe instructions for `peer`, in order.

        A subscribe to a dead process queues a `noproc_reason` certificate on `noproc`.
        Keys with the name bit are resolved by ``resolve_name(key)`` (-> the pid id of
        the process registered under the name the batch gave that key, or None:
        noproc); without `resolve_name` they are skipped. Each instruction costs O(1).
        -> number of instructions applied.
        """
        cdef Py_ssize_t n = keys.shape[0] // 8, i
        cdef uint64_t key
        cdef bint subscribed
        if keys.shape[0] % 8:
            raise ValueError("subscription batch is not whole uint64s")
        if peer == NIL:
            raise ValueError("no such peer")
        for i in range(n):
            memcpy(&key, &keys[i * 8], 8)
            key = le64toh(key)
            if key & UNSUBSCRIBE:
                if key & NAME_KEY and resolve_name is None:
                    continue
                with cython.critical_section(self):
                    subscription_remove(self, peer, key & ~UNSUBSCRIBE)
                continue
            if key & NAME_KEY:
                if resolve_name is None:
                    continue
                pid_id = resolve_name(key)     # Python code: outside the section
                if pid_id is None:
                    noproc.push(key, noproc_reason)
                    continue
                with cython.critical_section(self):
                    subscribed = subscription_add(self, peer, key, pid_id)
            else:
                with cython.critical_section(self):
                    subscribed = subscription_add(self, peer, key, key)
            if not subscribed:
                noproc.push(key, noproc_reason)
        return n

    def unsubscribe(self, uint32_t peer, uint64_t peer_key, uint64_t pid_id=0):
        """Drop `peer`'s subscription under `peer_key` (`pid_id` is not needed: the
        key names it). -> True if removed."""
        with cython.critical_section(self):
            return subscription_remove(self, peer, peer_key)

    def has_subscription(self, uint32_t peer, uint64_t peer_key):
        """True while `peer` holds a subscription under `peer_key`."""
        with cython.critical_section(self):
            return subscription_find(self, peer, peer_key) != NIL

    def name_subscribers(self):
        """Subscriptions held under name keys (a gauge: returns to 0 when unused)."""
        return self.name_subscriptions_live

    def drop_peer(self, uint32_t peer):
        """Drop every subscription of `peer` and its queued certificates. -> count.

        Walks only that peer's own subscriptions (never every process).
        """
        with cython.critical_section(self):
            return drop_peer_subscriptions(self, peer)

    # ---------------------------------------------- dispatcher (delivery.pxi)

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
        cdef list touched
        with cython.critical_section(self):
            touched = dispatch_tick(self, budget, max_backlog)
            if ZENMON_DEBUG_BUILD:
                check_core(self)
        return touched

    def refill(self, uint64_t watcher, Py_ssize_t max_backlog):
        """Top watcher `watcher`'s inbox up to `max_backlog` messages from the DOWNs
        parked for it (adaptive pacing), in order, in the calling thread: a receiver
        that has read half its backlog refills its own inbox, with no hand-over to
        the I/O thread. Not for bulk watchers (their batches are the dispatcher's).
        -> True while more stay parked; False when none do (entries still on the
        shared queue are the dispatcher's to move)."""
        cdef bint more
        with cython.critical_section(self):
            more = refill_inbox(self, watcher, max_backlog)
            if ZENMON_DEBUG_BUILD:
                check_core(self)
        return more

    def pending(self):
        """DOWNs queued and not yet handed to an inbox (shared queue plus parked)."""
        return self.downs.length + self.parked_total

    def inbox_total(self):
        """Messages waiting in all live inboxes (summed in C: no Python loop)."""
        with cython.critical_section(self):
            return inbox_total(self)

    def flush(self, object inbox not None, uint64_t ref):
        """Remove the DOWN for `ref` from `inbox`: a Down, or one inside a batch.

        In place and in order (a batch is replaced by one without that DOWN). The
        scan and the removal run with no allocation in between, so no other thread
        appends or takes a message meanwhile; rebuilding a batch allocates, so the
        batch is found again by identity afterwards (and the scan repeated if another
        thread changed it). -> True when a DOWN was removed.
        """
        return flush_ref(self, inbox, ref)

    # --------------------------------------------------------- metrics, checks

    def check_invariants(self):
        """Raise AssertionError naming the first broken invariant of the tables.

        O(table size): for tests and the debug build (which runs it after every
        dispatch tick and every ``sizes()``), not for production paths.
        """
        with cython.critical_section(self):
            check_core(self)

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
        for certificates in self.certificate_queues:
            batched += len(<CertificateQueue>certificates)
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
            "delivered": self.n_taken,     # taken off the queue: handed over or dropped
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
                + sum([(<DownQueue>q).capacity for q in self.parked.values()])
                * sizeof(QueuedDown))
