# Ring buffers: connector instructions (IdQueue: 64-bit ids), DOWNs waiting for the
# dispatcher (DownQueue), death certificates waiting for a batcher's sweep
# (CertificateQueue). All grow by doubling and keep
# their items contiguous in C memory; Python objects are held as owned pointers.


cdef inline void *grow_ring(void *items, size_t item_size, size_t capacity,
                            size_t head, size_t length, size_t *new_capacity) except NULL:
    """Return a buffer twice as large with the ring's items unrolled to index 0."""
    cdef size_t cap = capacity * 2 if capacity else 64
    cdef char *fresh = <char *>PyMem_Malloc(cap * item_size)
    cdef size_t first
    if fresh is NULL:
        raise MemoryError()
    if length:
        first = capacity - head if head + length > capacity else length
        memcpy(fresh, <char *>items + head * item_size, first * item_size)
        memcpy(fresh + first * item_size, items, (length - first) * item_size)
    PyMem_Free(items)
    new_capacity[0] = cap
    return fresh


@cython.final
cdef class IdQueue:
    """FIFO of 64-bit ids (a connector's pending subscribe/unsubscribe instructions).

    Invariant: items[head .. head+length) (mod capacity) are the queued ids in order.
    """

    def __cinit__(self):
        self.items = NULL
        self.capacity = self.head = self.length = 0

    def __dealloc__(self):
        PyMem_Free(self.items)

    def __len__(self):
        return self.length

    cdef int push(self, uint64_t value) except -1:
        if self.length == self.capacity:
            self.items = <uint64_t *>grow_ring(self.items, sizeof(uint64_t), self.capacity,
                                               self.head, self.length, &self.capacity)
            self.head = 0
        self.items[(self.head + self.length) % self.capacity] = value
        self.length += 1
        return 0

    cdef bytes take_bytes(self, size_t max_n):
        """Pop up to max_n ids, packed little-endian, straight into a bytes object."""
        cdef size_t n = min(max_n, self.length), i
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n * 8)
        cdef uint64_t *dst = <uint64_t *>PyBytes_AS_STRING(out)
        for i in range(n):
            dst[i] = htole64(self.items[(self.head + i) % self.capacity])
        self.head = (self.head + n) % self.capacity if self.capacity else 0
        self.length -= n
        return out

    cpdef void clear(self) noexcept:
        self.head = self.length = 0


@cython.final
cdef class DownQueue:
    """FIFO of queued DOWNs, (ref, death), waiting for the dispatcher.

    Holds one reference to each entry's death; ``pop`` hands it to the caller.
    """

    def __cinit__(self):
        self.items = NULL
        self.capacity = self.head = self.length = 0

    def __dealloc__(self):
        cdef size_t i
        for i in range(self.length):
            Py_XDECREF(<PyObject *>self.items[(self.head + i) % self.capacity].death)
        PyMem_Free(self.items)

    def __len__(self):
        return self.length

    cdef int push(self, uint64_t ref, object death) except -1:
        Py_INCREF(death)
        return self.push_owned(ref, <void *>death)

    cdef int push_owned(self, uint64_t ref, void *death) except -1:
        """Queue an entry whose reference to `death` the queue takes over."""
        cdef QueuedDown *slot
        if self.length == self.capacity:
            self.items = <QueuedDown *>grow_ring(self.items, sizeof(QueuedDown), self.capacity,
                                                 self.head, self.length, &self.capacity)
            self.head = 0
        slot = &self.items[(self.head + self.length) % self.capacity]
        slot.ref = ref
        slot.death = death
        self.length += 1
        return 0

    cdef QueuedDown pop(self) noexcept:
        """Take the oldest entry, with its reference (the queue must not be empty)."""
        cdef QueuedDown q = self.items[self.head]
        self.head = (self.head + 1) % self.capacity
        self.length -= 1
        return q


@cython.final
cdef class CertificateQueue:
    """A peer's queue of death certificates (peer key, truncated reason): the state of
    the design's Batcher for that peer (``zenmon/batcher.py`` encodes its sweeps).

    ``take`` assembles one dead summary: the keys packed as little-endian uint64,
    the distinct reasons once each, and a uint32 reason index per key.
    """

    def __cinit__(self):
        self.items = NULL
        self.capacity = self.head = self.length = 0
        self.enqueued = 0

    def __init__(self):
        raise TypeError("CertificateQueue is internal; Core.batcher_new() makes one")

    def __dealloc__(self):
        self.clear()
        PyMem_Free(self.items)

    def __len__(self):
        return self.length

    cdef int push(self, uint64_t peer_key, object reason) except -1:
        cdef DeathCertificate *slot
        if self.length == self.capacity:
            self.items = <DeathCertificate *>grow_ring(
                self.items, sizeof(DeathCertificate), self.capacity, self.head, self.length,
                &self.capacity)
            self.head = 0
        slot = &self.items[(self.head + self.length) % self.capacity]
        slot.peer_key = peer_key
        Py_INCREF(reason)
        slot.reason = <void *>reason
        self.length += 1
        self.enqueued += 1
        return 0

    def push_certificate(self, uint64_t peer_key, object reason):
        """Queue one death certificate (used for ``noproc`` answers)."""
        self.push(peer_key, reason)

    def take(self, size_t max_n):
        """Pop up to max_n certificates -> (keys: bytes, reasons: list, indexes: bytes)."""
        cdef size_t n = min(max_n, self.length), i
        cdef bytes keys = PyBytes_FromStringAndSize(NULL, n * 8)
        cdef bytes indexes = PyBytes_FromStringAndSize(NULL, n * 4)
        cdef uint64_t *kdst = <uint64_t *>PyBytes_AS_STRING(keys)
        cdef uint32_t *idst = <uint32_t *>PyBytes_AS_STRING(indexes)
        cdef DeathCertificate *c
        cdef list reasons = []
        cdef dict seen = {}
        cdef object reason
        for i in range(n):
            c = &self.items[(self.head + i) % self.capacity]
            kdst[i] = htole64(c.peer_key)
            reason = <object>c.reason
            index = seen.get(id(reason))
            if index is None:
                index = len(reasons)
                seen[id(reason)] = index
                reasons.append(reason)
            idst[i] = htole32(<uint32_t>index)
        for i in range(n):   # references dropped only after ids stopped mattering
            c = &self.items[(self.head + i) % self.capacity]
            Py_XDECREF(<PyObject *>c.reason)
        self.head = (self.head + n) % self.capacity if self.capacity else 0
        self.length -= n
        return keys, reasons, indexes

    cpdef void clear(self) noexcept:
        """Drop every queued certificate."""
        cdef size_t i
        for i in range(self.length):
            Py_XDECREF(<PyObject *>self.items[(self.head + i) % self.capacity].reason)
        self.head = self.length = 0
