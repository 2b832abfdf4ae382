# Invariant checks over the Core's tables: always compiled (``Core.check_invariants``
# runs them on demand); a ZENMON_DEBUG=1 build also runs them after every dispatch
# tick and every ``sizes()`` call, so the core and local suites check them throughout.


cdef extern from *:
    """
    #ifndef ZENMON_DEBUG
    #define ZENMON_DEBUG 0
    #endif
    """
    const bint ZENMON_DEBUG_BUILD "ZENMON_DEBUG"

#: True in a ZENMON_DEBUG=1 build (bounds checks on, invariants checked as it runs).
DEBUG_BUILD = ZENMON_DEBUG_BUILD


cdef int fail(str what) except -1:
    raise AssertionError(f"zenmon core invariant broken: {what}")


cdef uint32_t free_list_length(void *records, size_t size, size_t link_offset,
                               uint32_t head, uint32_t top) except? <uint32_t>NIL:
    """Walk a slab's free list (its link at `link_offset` in each record)."""
    cdef uint32_t n = 0, i = head
    while i != NIL:
        if i >= top:
            fail(f"free list points past the slab ({i} >= {top})")
        n += 1
        if n > top:
            fail("free list has a cycle")
        i = (<uint32_t *>(<char *>records + i * size + link_offset))[0]
    return n


cdef int check_core(Core core) except -1:
    """Raise AssertionError naming the first broken invariant of `core`'s tables."""
    cdef uint32_t i, m, t, n, live = 0, fired = 0, retired = 0, in_targets = 0
    cdef uint32_t in_subscribers = 0, targets_used = 0, alive = 0
    cdef MonitorRecord *rec
    cdef Py_ssize_t parked = 0
    # monitors: live count, free list, retired slots
    for i in range(core.monitors_top):
        rec = &core.monitors[i]
        if rec.flags & 3 == STATE_LIVE:
            live += 1
        elif rec.flags & 3 == STATE_FIRED:
            fired += 1
        elif rec.gen == 0:
            retired += 1
    if live + fired != core.monitors_live:
        fail(f"monitors_live {core.monitors_live} but {live + fired} records in use")
    n = free_list_length(core.monitors, sizeof(MonitorRecord),
                         <size_t>&(<MonitorRecord *>NULL).next_free, core.monitors_free,
                         core.monitors_top)
    if n + live + fired + retired != core.monitors_top:
        fail(f"monitor slab: {n} free + {live + fired} used + {retired} retired "
             f"!= {core.monitors_top}")
    # targets: each one found by the index, its list holding LIVE monitors only
    for t in range(core.targets_top):
        if core.targets[t].conn == NIL:       # free (on the free list)
            continue
        targets_used += 1
        if core.targets[t].head == NIL:
            fail(f"target {t} is in use with no monitor")
        if target_find(core, core.targets[t].conn, core.targets[t].key) != t:
            fail(f"target {t} is not found by its index")
        m = core.targets[t].head
        while m != NIL:
            rec = &core.monitors[m]
            if rec.flags & 3 != STATE_LIVE or rec.target != t:
                fail(f"monitor {m} in target {t}'s list is not LIVE on it")
            in_targets += 1
            if in_targets > live:
                fail("target lists hold more monitors than are LIVE")
            m = rec.t_next
    n = free_list_length(core.targets, sizeof(TargetRecord),
                         <size_t>&(<TargetRecord *>NULL).next_free, core.targets_free,
                         core.targets_top)
    if n + targets_used != core.targets_top:
        fail(f"target slab: {n} free + {targets_used} used != {core.targets_top}")
    if targets_used != core.targets_live:
        fail(f"targets_live {core.targets_live} but {targets_used} targets in use")
    if in_targets != live:
        fail(f"{live} LIVE monitors but {in_targets} in target lists")
    # processes: alive ones hold an inbox and their watch lists hold their monitors
    for i in range(core.processes_top):
        if not core.processes[i].alive:
            if core.inboxes[i] is not None:
                fail(f"dead process slot {i} still has an inbox")
            continue
        alive += 1
        if core.inboxes[i] is None:
            fail(f"live process slot {i} has no inbox")
        m = core.processes[i].watch_head
        while m != NIL:
            rec = &core.monitors[m]
            if rec.flags & 3 == STATE_FREE or rec.subscriber != i:
                fail(f"monitor {m} in process {i}'s watch list is not its own")
            in_subscribers += 1
            if in_subscribers > live + fired:
                fail("watch lists hold more monitors than are in use")
            m = rec.s_next
        if core.processes[i].alive & PROCESS_PARKED and i not in core.parked:
            fail(f"process {i} is marked parked but has no parked queue")
    n = free_list_length(core.processes, sizeof(ProcessRecord),
                         <size_t>&(<ProcessRecord *>NULL).next_free, core.processes_free,
                         core.processes_top)
    retired = 0
    for i in range(core.processes_top):
        if not core.processes[i].alive and core.processes[i].gen == 0:
            retired += 1
    if n + alive + retired != core.processes_top:
        fail(f"process slab: {n} free + {alive} alive + {retired} retired "
             f"!= {core.processes_top}")
    n = free_list_length(core.subscriptions, sizeof(SubscriptionRecord),
                         <size_t>&(<SubscriptionRecord *>NULL).next_free, core.subscriptions_free,
                         core.subscriptions_top)
    if n + core.subscriptions_live != core.subscriptions_top:
        fail(f"subscription slab: {n} free + {core.subscriptions_live} live "
             f"!= {core.subscriptions_top}")
    check_subscriptions(core)
    if alive != core.processes_live:
        fail(f"processes_live {core.processes_live} but {alive} slots alive")
    if in_subscribers != live + fired:
        fail(f"{live + fired} monitors in use but {in_subscribers} in watch lists")
    # parked DOWNs: counted once, and only for live watchers
    for slot, queue in core.parked.items():
        parked += len(<DownQueue>queue)
        if not core.processes[<uint32_t>slot].alive & PROCESS_PARKED:
            fail(f"parked queue for slot {slot} whose process is not marked parked")
    if parked != core.parked_total:
        fail(f"parked_total {core.parked_total} but {parked} parked entries")
    check_links(core)                   # links.pxi
    return 0


cdef int check_subscriptions(Core core) except -1:
    """Every live subscription is on its alive process's list (linked both ways), on
    its peer's list, and found by the (peer, key) index; nothing else is."""
    cdef uint32_t i, q, prev, n = 0, named = 0, on_processes = 0, on_peers = 0
    cdef SubscriptionRecord *sub
    for q in range(core.subscriptions_top):
        sub = &core.subscriptions[q]
        if sub.peer == NIL:
            continue
        n += 1
        if sub.peer_key & NAME_KEY:
            named += 1
        if subscription_find(core, sub.peer, sub.peer_key) != q:
            fail(f"subscription {q} is not found by its (peer, key)")
        if not core.processes[sub.slot].alive:
            fail(f"subscription {q} on a dead process slot {sub.slot}")
    if n != core.subscriptions_live or named != core.name_subscriptions_live:
        fail(f"subscriptions_live {core.subscriptions_live} / named "
             f"{core.name_subscriptions_live} but {n} / {named} records in use")
    for i in range(core.processes_top):
        if not core.processes[i].alive:
            continue
        prev = NIL
        q = core.processes[i].proxy_head
        while q != NIL:
            if core.subscriptions[q].slot != i or core.subscriptions[q].prev != prev:
                fail(f"process {i}'s subscription list is broken at {q}")
            on_processes += 1
            if on_processes > n:
                fail("process subscription lists hold more than are live")
            prev = q
            q = core.subscriptions[q].next
    for i in range(core.peer_heads_cap):
        prev = NIL
        q = core.peer_heads[i]
        while q != NIL:
            if core.subscriptions[q].peer != i or core.subscriptions[q].peer_prev != prev:
                fail(f"peer {i}'s subscription list is broken at {q}")
            on_peers += 1
            if on_peers > n:
                fail("peer subscription lists hold more than are live")
            prev = q
            q = core.subscriptions[q].peer_next
    if on_processes != n or on_peers != n:
        fail(f"{n} subscriptions live, {on_processes} on process lists, "
             f"{on_peers} on peer lists")
    return 0
