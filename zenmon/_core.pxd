# cython: language_level=3
"""Table of contents of zenmon's hot path: every cdef class, field and function.

``Core`` holds the state; the functions over it live in the rooms of ``_cy/`` (each
takes the Core as first argument) and are declared below room by room. A few small
steps of a process exit are ``cdef inline`` in their rooms (so that the C compiler
folds them into ``Core.process_exit``) and are not declared here.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef enum:
    NIL = 0xFFFFFFFF          # "no slot" in every intrusive list
    STATE_FREE = 0
    STATE_LIVE = 1            # linked into its target's list
    STATE_FIRED = 2           # DOWN queued in the dispatcher, not yet delivered
    FLAG_BY_NAME = 4          # monitor made by registered name
    FLAG_LINK = 8             # the watching half of a link: fires an exit signal
    PROCESS_ALIVE = 1
    PROCESS_BULK = 2          # DOWNs of one dispatcher tick arrive as one DownBatch
    PROCESS_PARKED = 4        # adaptive pacing: has DOWNs parked, its inbox was full
    PROCESS_TRAP = 8          # traps exits: link signals arrive as Exit messages
    PARK_LOOK_LIMIT = 8192    # shared-queue entries one adaptive dispatch looks at
    OP_UNSUBSCRIBE_BIT = 63   # bit set on a queued connector instruction
    NAME_KEY_BIT = 62         # remote target key that stands for a registered name
    PEER_CONN = 0x80000000    # target conn >= this: links made by proxy peer (conn - it)
    LINK_OP = 1               # link ops in a SUBSCRIBE (see _cy/links.pxi)
    UNLINK_OP = 2
    EXIT_OP = 3
    # what Core.monitor and the link functions return instead of a ref (exported to
    # Python as NO_SUBSCRIBER, TARGET_DEAD, LINK_DONE, CONNECTOR_CLOSED)
    RESULT_NO_SUBSCRIBER = 0
    RESULT_TARGET_DEAD = 1
    RESULT_LINK_DONE = 2
    RESULT_CONNECTOR_CLOSED = 3


# The slabs' records, defined in _cy/records.h: a field with two meanings (in use /
# free, or live / fired for a link record) is an anonymous union there, each meaning
# under its own name here, and the record is no larger than its in-use fields.
cdef extern from "_cy/records.h":
    ctypedef struct MonitorRecord:
        uint32_t gen              # bumped on free: a ref is (gen << 32 | slot)
        uint32_t subscriber       # process slot of the watcher
        uint32_t target           # LIVE: target slot
        uint32_t t_prev           # LIVE: the target's list
        uint32_t t_next
        uint32_t other_conn       # FIRED link record: the other end (same word as target)
        uint32_t other_key_high   # ... its key, high half (same word as t_prev)
        uint32_t other_key_low    # ... its key, low half (same word as t_next)
        uint32_t next_free        # FREE: next free record (same word as t_next)
        uint32_t s_prev           # the watcher's own list
        uint32_t s_next
        uint32_t flags            # state | FLAG_BY_NAME | FLAG_LINK

    ctypedef struct TargetRecord:
        uint64_t key              # pid id (local or remote) or remote name key
        uint32_t conn             # 0: this node; n: connector n; NIL: free
        uint32_t head             # in use: first monitor record
        uint32_t next_free        # free: next free record (same word as head)

    ctypedef struct ProcessRecord:
        uint32_t gen              # a pid id is (gen << 32 | slot)
        uint32_t alive            # PROCESS_ALIVE | PROCESS_BULK | ..., 0 once dead
        uint32_t watch_head       # monitors this process holds (as subscriber)
        uint32_t proxy_head       # alive: subscriptions of remote peers on this process
        uint32_t next_free        # dead: next free slot (same word as proxy_head)

    ctypedef struct SubscriptionRecord:
        uint64_t peer_key         # the key the peer used: pid id or its name key
        uint32_t peer             # peer index; NIL when free
        uint32_t next             # in use: next subscription on the same process
        uint32_t next_free        # free: next free record (same word as next)
        uint32_t prev             # previous subscription on the same process (NIL: first)
        uint32_t slot             # the process slot it is on
        uint32_t peer_prev        # the peer's own list (drop_peer walks only its own)
        uint32_t peer_next


ctypedef struct QueuedDown:
    uint64_t ref
    void *death               # owned reference to (pid, reason, name_pid)


ctypedef struct DeathCertificate:
    uint64_t peer_key
    void *reason              # owned reference to the truncated reason


cdef class Pid:
    cdef readonly str node
    cdef readonly uint64_t incarnation
    cdef readonly uint64_t id

    @staticmethod
    cdef Pid new(str node, uint64_t incarnation, uint64_t id)


cdef class IdQueue:
    cdef uint64_t *items
    cdef size_t capacity, head, length
    cdef int push(self, uint64_t value) except -1
    cdef bytes take_bytes(self, size_t max_n)
    cpdef void clear(self) noexcept


cdef class DownQueue:
    cdef QueuedDown *items
    cdef size_t capacity, head, length
    cdef int push(self, uint64_t ref, object death) except -1
    cdef int push_owned(self, uint64_t ref, void *death) except -1
    cdef QueuedDown pop(self) noexcept


cdef class CertificateQueue:
    cdef DeathCertificate *items
    cdef size_t capacity, head, length
    cdef readonly uint64_t enqueued
    cdef int push(self, uint64_t peer_key, object reason) except -1
    cpdef void clear(self) noexcept


cdef class Core:
    # tables (_cy/tables.pxi): slabs of records, each with a free list
    cdef MonitorRecord *monitors
    cdef uint32_t monitors_cap, monitors_top, monitors_free, monitors_live
    cdef TargetRecord *targets
    cdef uint32_t targets_cap, targets_top, targets_free, targets_live
    cdef uint32_t *target_index         # (conn, key) -> slot + 1, open addressing
    cdef uint64_t target_index_mask
    cdef ProcessRecord *processes
    cdef uint32_t processes_cap, processes_top, processes_free, processes_live
    cdef list inboxes              # process slot -> its inbox (a deque; None: free)
    cdef list process_objects      # process slot -> its Process ("owner": for waking)
    # connectors (_cy/connectors.pxi)
    cdef list connector_queues     # conn -> IdQueue of instructions (None: closed)
    cdef uint64_t *conn_targets     # distinct targets per connector (0: local)
    cdef uint32_t conn_cap
    cdef readonly str address
    cdef readonly uint64_t incarnation
    cdef dict routes             # remote address -> (connector index, incarnation)
    # subscriptions, the proxy side (_cy/subscriptions.pxi)
    cdef SubscriptionRecord *subscriptions
    cdef uint32_t subscriptions_cap, subscriptions_top, subscriptions_free
    cdef uint32_t subscriptions_live, name_subscriptions_live
    cdef uint32_t *subscription_index   # (peer, peer key) -> slot + 1, open addressing
    cdef uint64_t subscription_index_mask
    cdef uint64_t subscription_seed     # random: a peer cannot aim keys at one bucket
    cdef uint32_t *peer_heads           # peer index -> its first subscription
    cdef uint32_t peer_heads_cap
    cdef list certificate_queues   # peer index -> its batcher's CertificateQueue
    # delivery (_cy/delivery.pxi)
    cdef readonly DownQueue downs
    cdef dict parked               # process slot -> DownQueue of DOWNs for a full inbox
    cdef Py_ssize_t parked_total
    cdef dict last_batch           # bulk process slot -> its last DownBatch (adaptive)
    cdef uint32_t *stamps          # process slot -> the tick that last touched it
    cdef uint32_t stamp            # this tick
    cdef bint delivering           # a dispatch tick is under way (refill waits for it)
    cdef bint refilling            # a receiver's refill is under way (ticks park behind)
    cdef object deque_append
    cdef object down_type
    cdef object batch_type
    # links (_cy/links.pxi)
    cdef object exit_type
    cdef list link_queues          # conn -> IdQueue of link ops (3 words each)
    cdef list link_reasons         # conn -> deque of the reasons of its EXIT ops
    cdef list link_kills           # (owner, reason) of processes a link signal kills
    cdef uint32_t links_live
    # counters
    cdef readonly uint64_t n_monitor, n_demonitor, n_enqueue, n_connector_enqueue
    # n_taken: entries taken off the dispatcher queues (shared or parked), whether
    # handed to an inbox or dropped as stale (demonitored, watcher dead); read as the
    # metric zenmon.local.dispatcher.events.delivered. n_processed: handed to inboxes.
    cdef readonly uint64_t n_taken, n_processed, n_batches, n_batcher_enqueue
    cdef readonly uint64_t n_batch_length
    cdef readonly uint64_t n_retired      # slots whose 2**32 generations are used up
    cdef readonly uint64_t n_link, n_unlink, n_link_signal


# tables (_cy/tables.pxi): monitors
cdef uint32_t monitor_alloc(Core self) except? <uint32_t>NIL
cdef void monitor_free(Core self, uint32_t m) noexcept
cdef void unlink_from_target(Core self, uint32_t m) noexcept
cdef void link_to_subscriber(Core self, uint32_t m, uint32_t s) noexcept
cdef void unlink_from_subscriber(Core self, uint32_t m) noexcept
cdef uint64_t add_monitor(Core self, uint64_t subscriber, uint32_t conn, uint64_t key,
                          bint by_name) except? 2
cdef uint64_t add_fired_monitor(Core self, uint64_t subscriber, object death,
                                bint by_name) except? 0
cdef bint remove_monitor(Core self, uint64_t subscriber, uint64_t ref) except -1
cdef Py_ssize_t fire_target(Core self, uint32_t t, object death) except -1
# tables: targets
cdef uint32_t target_find(Core self, uint32_t conn, uint64_t key) noexcept
cdef int target_index_grow(Core self) except -1
cdef uint32_t target_add(Core self, uint32_t conn, uint64_t key) except? <uint32_t>NIL
cdef void target_remove(Core self, uint32_t t) noexcept
cdef int release_target_if_empty(Core self, uint32_t t) except -1
# tables: processes
cdef uint32_t process_slot(Core self, uint64_t pid_id) noexcept
cdef int grow_processes(Core self) except -1
cdef uint64_t process_alloc(Core self, object inbox, object owner) except 0
cdef uint64_t set_generation(Core self, uint64_t id, bint process, uint32_t gen) except? 0

# connectors (_cy/connectors.pxi)
cdef int enqueue_connector(Core self, uint32_t conn, uint64_t value) except -1
cdef uint32_t route_of(Core self, Pid target) except? <uint32_t>NIL
cdef uint32_t connector_open(Core self) except? <uint32_t>NIL
cdef bint connector_try_close(Core self, uint32_t conn) except -1
cdef Py_ssize_t fire_summary(Core self, uint32_t conn, str node, uint64_t incarnation,
                             const unsigned char[::1] keys, list reasons,
                             const unsigned char[::1] indexes, dict names) except -1
cdef tuple fire_connector_chunk(Core self, uint32_t conn, str node, uint64_t incarnation,
                                dict names, object reason, uint32_t start,
                                Py_ssize_t max_downs)
cdef Py_ssize_t move_name_targets(Core self, uint32_t old, uint32_t new,
                                  dict keys) except -1

# subscriptions (_cy/subscriptions.pxi)
cdef uint64_t subscription_hash(Core self, uint32_t peer, uint64_t peer_key) noexcept
cdef uint32_t subscription_find(Core self, uint32_t peer, uint64_t peer_key) noexcept
cdef int subscription_index_grow(Core self) except -1
cdef int subscription_reserve(Core self, uint32_t peer) except -1
cdef void subscription_unlink_process(Core self, uint32_t q) noexcept
cdef void subscription_free(Core self, uint32_t q) noexcept
cdef bint subscription_add(Core self, uint32_t peer, uint64_t peer_key,
                           uint64_t pid_id) except -1
cdef bint subscription_remove(Core self, uint32_t peer, uint64_t peer_key) noexcept
cdef Py_ssize_t drop_peer_subscriptions(Core self, uint32_t peer) except -1

# delivery (_cy/delivery.pxi)
cdef list dispatch_tick(Core self, Py_ssize_t budget, Py_ssize_t max_backlog)
cdef Py_ssize_t serve_parked(Core self, Py_ssize_t budget, Py_ssize_t max_backlog,
                             dict batches, list touched) except -1
cdef Py_ssize_t serve_parked_of(Core self, uint32_t s, Py_ssize_t room, Py_ssize_t cap,
                                dict batches, list touched) except -1
cdef bint refill_inbox(Core self, uint64_t watcher, Py_ssize_t max_backlog) except -1
cdef int serve_queue(Core self, Py_ssize_t budget, Py_ssize_t handed,
                     Py_ssize_t max_backlog, dict batches, list touched) except -1
cdef Py_ssize_t room_in(Core self, uint32_t s, dict batches,
                        Py_ssize_t max_backlog) except -1
cdef uint32_t live_subscriber(Core self, uint64_t ref) noexcept
cdef object down_of(Core self, uint64_t ref, object death)
cdef void release_fired(Core self, uint32_t s, uint64_t ref) noexcept
cdef int touch(Core self, uint32_t s, list touched) except -1
cdef bint hand_down(Core self, uint32_t s, uint64_t ref, object death, dict batches,
                    list touched) except -1
cdef int deliver_batch(Core self, uint32_t s, list refs, list deaths, bint track_last,
                       list touched) except -1
cdef int park(Core self, uint32_t s, QueuedDown q) except -1
cdef Py_ssize_t inbox_total(Core self) except -1
cdef bint flush_ref(Core self, object inbox, uint64_t ref) except -1

# links (_cy/links.pxi): functions over a Core's link records, in the order they are used
cdef uint32_t link_find(Core self, uint32_t s, uint32_t conn, uint64_t key,
                        bint fired_too) noexcept
cdef uint64_t link_add(Core self, uint32_t s, uint32_t conn, uint64_t key) except? 0
cdef int link_remove(Core self, uint32_t m) except -1
cdef IdQueue link_queue(Core self, uint32_t conn)
cdef int link_op(Core self, uint32_t conn, uint64_t op, uint64_t target, uint64_t other,
                 object reason) except -1
cdef int links_on_exit(Core self, uint32_t s, uint64_t pid_id, object reason) except -1
cdef int link_unlinked(Core self, uint32_t conn, uint64_t key, object other) except -1
cdef bint hand_link(Core self, uint32_t s, uint64_t ref, object death,
                    list touched) except -1
cdef Py_ssize_t link_ops_pending(Core self, uint32_t conn) except -1
cdef int links_clear(Core self, uint32_t conn) except -1
cdef int check_links(Core self) except -1

# debug (_cy/debug.pxi)
cdef uint32_t free_list_length(void *records, size_t size, size_t link_offset,
                               uint32_t head, uint32_t top) except? <uint32_t>NIL
cdef int check_core(Core core) except -1
cdef int check_subscriptions(Core core) except -1
