# Delivery (the dispatcher's loop): queued DOWNs handed to their watchers' inboxes,
# one Down each or, for a bulk watcher, one batch per tick; under adaptive pacing the
# DOWNs of a watcher whose inbox is full are parked on a queue of their own; a DOWN
# already in an inbox can be flushed. The token bucket's arithmetic (how many per
# tick) is in dispatcher.py; this is the loop it calls once per tick.
#
# Any allocation here may run a garbage collection, hence Python code, hence another
# thread, which may exit a watcher or demonitor an entry: an entry's monitor is freed
# only in the same step, free of allocations, that appends its message to the inbox,
# after its liveness was checked again.


cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        PyObject *(*tp_alloc)(PyTypeObject *, Py_ssize_t) except NULL
    void PyObject_GC_UnTrack(void *op)
    int PyObject_GC_IsTracked(object op)
    void PyTuple_SET_ITEM(object tup, Py_ssize_t pos, object item)


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


# ---------------------------------------------------------------- one tick


cdef list dispatch_tick(Core self, Py_ssize_t budget, Py_ssize_t max_backlog):
    """The body of ``Core.dispatch`` (which documents it), in its critical section."""
    cdef list touched = []
    cdef dict batches = {}         # bulk slot -> [refs, deaths] of its FIRED entries
    cdef Py_ssize_t handed = 0
    self.stamp += 1
    if not max_backlog and self.last_batch:
        self.last_batch.clear()      # left adaptive pacing: nothing to track
    self.delivering = True
    try:
        if self.parked_total and not self.refilling:   # older: served first
            handed = serve_parked(self, budget, max_backlog, batches, touched)
        serve_queue(self, budget, handed, max_backlog, batches, touched)
        for slot, pending in batches.items():
            deliver_batch(self, slot, <list>(<list>pending)[0], <list>(<list>pending)[1],
                          max_backlog > 0, touched)
    finally:
        self.delivering = False
    return touched


cdef Py_ssize_t serve_parked(Core self, Py_ssize_t budget, Py_ssize_t max_backlog,
                             dict batches, list touched) except -1:
    """Hand parked entries over, watcher by watcher, while they have room. -> handed."""
    cdef Py_ssize_t handed = 0, room
    cdef uint32_t s
    for slot in list(self.parked):
        if handed >= budget:
            break
        s = slot
        room = budget - handed
        if max_backlog:
            room = min(room, room_in(self, s, batches, max_backlog))
        handed += serve_parked_of(self, s, room, 0, batches, touched)
    return handed


cdef Py_ssize_t serve_parked_of(Core self, uint32_t s, Py_ssize_t room, Py_ssize_t cap,
                                dict batches, list touched) except -1:
    """Hand up to `room` of watcher `s`'s parked entries over, in order, and (with
    `cap` > 0) only while its inbox holds fewer than `cap` messages (looked at for
    each: building an Exit runs Python code, so other threads may append). ->
    handed."""
    cdef Py_ssize_t handed = 0
    cdef QueuedDown q
    cdef DownQueue parked
    slot = s
    parked = self.parked.get(slot)
    if parked is None:
        return 0                   # nothing parked, or its watcher died meanwhile
    while room > 0 and parked.length and self.parked.get(slot) is parked:
        if cap and (self.inboxes[s] is None or len(self.inboxes[s]) >= cap):
            break
        q = parked.pop()
        self.parked_total -= 1
        self.n_taken += 1
        if live_subscriber(self, q.ref) == s:
            if hand_down(self, s, q.ref, <object>q.death, batches, touched):
                room -= 1
                handed += 1
        Py_XDECREF(<PyObject *>q.death)
    if not parked.length and self.parked.get(slot) is parked:
        del self.parked[slot]
        self.processes[s].alive &= ~PROCESS_PARKED
    return handed


cdef bint refill_inbox(Core self, uint64_t watcher, Py_ssize_t max_backlog) except -1:
    """The body of ``Core.refill`` (which documents it)."""
    cdef uint32_t s = process_slot(self, watcher)
    # not during a tick (another thread entered it through an allocation): entries
    # popped there must reach the inbox first
    if self.delivering or s == NIL or self.processes[s].alive & PROCESS_BULK \
            or not self.processes[s].alive & PROCESS_PARKED:
        return False
    self.refilling = True          # a tick meanwhile parks behind us, serves no parked
    try:
        serve_parked_of(self, s, max_backlog, max_backlog, None, [])
    finally:
        self.refilling = False
    return self.processes[s].alive & PROCESS_PARKED != 0


cdef int serve_queue(Core self, Py_ssize_t budget, Py_ssize_t handed,
                     Py_ssize_t max_backlog, dict batches, list touched) except -1:
    """Take entries off the shared queue until `budget` is handed (counting `handed`
    already), parking those of a full inbox; stale entries cost no budget."""
    cdef Py_ssize_t looked = 0, look_limit
    cdef QueuedDown q
    cdef uint32_t s
    cdef DownQueue downs = self.downs
    look_limit = downs.length
    if max_backlog and look_limit > PARK_LOOK_LIMIT:
        look_limit = PARK_LOOK_LIMIT
    while downs.length and handed < budget and looked < look_limit:
        q = downs.pop()
        looked += 1
        s = live_subscriber(self, q.ref)
        if s != NIL and max_backlog and (
                self.processes[s].alive & PROCESS_PARKED
                or not room_in(self, s, batches, max_backlog)):
            if live_subscriber(self, q.ref) == s:    # room_in may have let
                park(self, s, q)                     # another thread run
                continue
            s = NIL
        self.n_taken += 1
        if s != NIL and hand_down(self, s, q.ref, <object>q.death, batches, touched):
            handed += 1
        Py_XDECREF(<PyObject *>q.death)
    return 0


cdef Py_ssize_t room_in(Core self, uint32_t s, dict batches,
                        Py_ssize_t max_backlog) except -1:
    """DOWNs watcher `s`'s inbox may still take under adaptive pacing.

    Room for ``max_backlog`` messages. A bulk watcher has at most one batch of at
    most ``max_backlog`` DOWNs in its inbox: no room while its last batch has not
    been taken (looked for by identity among at most ``max_backlog`` messages).
    """
    cdef object inbox = self.inboxes[s]
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


cdef uint32_t live_subscriber(Core self, uint64_t ref) noexcept:
    """The watcher slot of a queued DOWN still to deliver; NIL when it is stale."""
    cdef uint32_t m = <uint32_t>(ref & LOW32)
    cdef MonitorRecord *rec
    if m >= self.monitors_top:
        return NIL
    rec = &self.monitors[m]
    if rec.gen != <uint32_t>(ref >> 32) or rec.flags & 3 != STATE_FIRED:
        return NIL
    return rec.subscriber


cdef object down_of(Core self, uint64_t ref, object death):
    """The Down for queued entry `ref` (allocates: other threads may run)."""
    cdef uint32_t m = <uint32_t>(ref & LOW32)
    pid = (<tuple>death)[0]
    if self.monitors[m].flags & FLAG_BY_NAME and (<tuple>death)[2] is not None:
        pid = (<tuple>death)[2]
    return new_down(self.down_type, ref, pid, (<tuple>death)[1])


cdef void release_fired(Core self, uint32_t s, uint64_t ref) noexcept:
    """Free the FIRED monitor `ref` of watcher `s` once its DOWN is in the inbox."""
    cdef uint32_t m = <uint32_t>(ref & LOW32)
    unlink_from_subscriber(self, m)
    monitor_free(self, m)
    self.n_processed += 1


cdef int touch(Core self, uint32_t s, list touched) except -1:
    """Something reached watcher `s`'s inbox: list its owner once per tick."""
    if self.stamps[s] != self.stamp:
        self.stamps[s] = self.stamp
        touched.append(self.process_objects[s])
    return 0


cdef bint hand_down(Core self, uint32_t s, uint64_t ref, object death, dict batches,
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
    down = down_of(self, ref, death)
    # allocations done: from here to the append nothing can run other Python code
    if live_subscriber(self, ref) != s:
        return False
    release_fired(self, s, ref)
    self.deque_append(self.inboxes[s], down)
    touch(self, s, touched)
    return True


cdef int deliver_batch(Core self, uint32_t s, list refs, list deaths, bint track_last,
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
            if live_subscriber(self, <uint64_t>refs[i]) == s:
                refs[k] = refs[i]
                deaths[k] = deaths[i]
                k += 1
        del refs[k:]
        del deaths[k:]
        if not k:
            return 0
        downs = PyTuple_New(k)
        for i in range(k):
            down = down_of(self, <uint64_t>refs[i], deaths[i])
            Py_INCREF(down)
            PyTuple_SET_ITEM(downs, i, down)
        batch = new_batch(self.batch_type, downs)
        stale = False
        for i in range(k):
            if live_subscriber(self, <uint64_t>refs[i]) != s:
                stale = True
                break
        if stale:
            continue
        for i in range(k):
            release_fired(self, s, <uint64_t>refs[i])
        self.deque_append(self.inboxes[s], batch)
        if track_last:
            self.last_batch[s] = batch
        touch(self, s, touched)
        return 0


# ------------------------------------------------------------------- parking


cdef int park(Core self, uint32_t s, QueuedDown q) except -1:
    """Move queued entry `q` (and its reference) to watcher `s`'s parked queue."""
    parked = self.parked.get(s)
    if parked is None:
        parked = DownQueue()
        self.parked[s] = parked
        self.processes[s].alive |= PROCESS_PARKED
    (<DownQueue>parked).push_owned(q.ref, q.death)
    self.parked_total += 1
    return 0


cdef inline int forget_deliveries(Core self, uint32_t slot) except -1:
    """Dying watcher `slot`: its parked DOWNs are dropped, its last batch forgotten."""
    if self.processes[slot].alive & PROCESS_BULK:
        self.last_batch.pop(slot, None)
    if self.processes[slot].alive & PROCESS_PARKED:
        parked = self.parked.pop(slot)
        self.parked_total -= len(<DownQueue>parked)
        self.n_taken += len(<DownQueue>parked)     # dropped: watcher dead
    return 0


# -------------------------------------------------------------------- inboxes


cdef Py_ssize_t inbox_total(Core self) except -1:
    cdef Py_ssize_t total = 0
    for inbox in self.inboxes:
        if inbox is not None:
            total += len(inbox)
    return total


cdef bint flush_ref(Core self, object inbox, uint64_t ref) except -1:
    """The body of ``Core.flush`` (which documents it)."""
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
