# Subscriptions (the proxy side: remote peers watching this node's processes). One
# record per (peer, peer key), on two lists (its process's, for a process exit, and
# its peer's, for dropping a peer) and in a hash index by (peer, key), so subscribe,
# unsubscribe and dropping a peer cost O(1) per subscription touched, whatever one
# frame or one peer sends. A process's death becomes one death certificate on the
# certificate queue of each subscribed peer's batcher. Every function here runs inside the caller's
# critical section.


cdef uint64_t subscription_hash(Core self, uint32_t peer, uint64_t peer_key) noexcept:
    return mix64(peer_key ^ self.subscription_seed
                 ^ (<uint64_t>peer * <uint64_t>0x9E3779B97F4A7C15))


cdef uint32_t subscription_find(Core self, uint32_t peer, uint64_t peer_key) noexcept:
    cdef uint64_t mask = self.subscription_index_mask
    cdef uint64_t i
    cdef uint32_t q
    if self.subscription_index is NULL:
        return NIL
    i = subscription_hash(self, peer, peer_key) & mask
    while True:
        q = self.subscription_index[i]
        if q == 0:
            return NIL
        q -= 1
        if self.subscriptions[q].peer_key == peer_key and self.subscriptions[q].peer == peer:
            return q
        i = (i + 1) & mask


cdef int subscription_index_grow(Core self) except -1:
    cdef uint64_t size = (self.subscription_index_mask + 1) * 2 if (
        self.subscription_index is not NULL) else 1024
    cdef uint64_t i, j
    cdef uint32_t q
    cdef uint32_t *fresh = <uint32_t *>PyMem_Malloc(size * sizeof(uint32_t))
    if fresh is NULL:
        raise MemoryError()
    for i in range(size):
        fresh[i] = 0
    if self.subscription_index is not NULL:
        for i in range(self.subscription_index_mask + 1):
            q = self.subscription_index[i]
            if q:
                j = subscription_hash(self, self.subscriptions[q - 1].peer,
                                      self.subscriptions[q - 1].peer_key) & (size - 1)
                while fresh[j]:
                    j = (j + 1) & (size - 1)
                fresh[j] = q
        PyMem_Free(self.subscription_index)
    self.subscription_index = fresh
    self.subscription_index_mask = size - 1
    return 0


cdef int subscription_reserve(Core self, uint32_t peer) except -1:
    # room for one more record, its index entry, and a list head for `peer`
    cdef uint64_t cap, i
    cdef uint32_t *grown
    if (self.subscription_index is NULL or (<uint64_t>self.subscriptions_live + 1) * 2
            > self.subscription_index_mask + 1):
        subscription_index_grow(self)
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


cdef void subscription_unlink_process(Core self, uint32_t q) noexcept:
    cdef SubscriptionRecord *sub = &self.subscriptions[q]
    if sub.prev == NIL:
        self.processes[sub.slot].proxy_head = sub.next
    else:
        self.subscriptions[sub.prev].next = sub.next
    if sub.next != NIL:
        self.subscriptions[sub.next].prev = sub.prev


cdef void subscription_free(Core self, uint32_t q) noexcept:
    # out of the index and the peer's list; the caller has dealt with the
    # process's list (unlinked it, or is discarding the whole list)
    cdef SubscriptionRecord *sub = &self.subscriptions[q]
    cdef uint64_t mask = self.subscription_index_mask
    cdef uint64_t i = subscription_hash(self, sub.peer, sub.peer_key) & mask
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
        k = subscription_hash(self, self.subscriptions[u - 1].peer,
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
    sub.next_free = self.subscriptions_free
    self.subscriptions_free = q
    self.subscriptions_live -= 1


cdef bint subscription_add(Core self, uint32_t peer, uint64_t peer_key,
                           uint64_t pid_id) except -1:
    """Subscribe `peer` to live process `pid_id` under `peer_key` (the first one
    stays). -> False when the process is dead."""
    cdef uint32_t slot, q
    cdef uint64_t i
    cdef SubscriptionRecord *sub
    slot = process_slot(self, pid_id)
    if slot == NIL:
        return False
    if subscription_find(self, peer, peer_key) != NIL:
        return True
    subscription_reserve(self, peer)
    if self.subscriptions_free != NIL:
        q = self.subscriptions_free
        self.subscriptions_free = self.subscriptions[q].next_free
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
    i = subscription_hash(self, peer, peer_key) & self.subscription_index_mask
    while self.subscription_index[i]:
        i = (i + 1) & self.subscription_index_mask
    self.subscription_index[i] = q + 1
    self.subscriptions_live += 1
    if peer_key & NAME_KEY:
        self.name_subscriptions_live += 1
    return True


cdef bint subscription_remove(Core self, uint32_t peer, uint64_t peer_key) noexcept:
    """Drop `peer`'s subscription under `peer_key`. -> False when it had none."""
    cdef uint32_t q = subscription_find(self, peer, peer_key)
    if q == NIL:
        return False
    subscription_unlink_process(self, q)
    subscription_free(self, q)
    return True


cdef inline int certify_death(Core self, uint32_t slot, object reason) except -1:
    """Dying process `slot`: one death certificate per subscription on it, each on
    its peer's certificate queue; the subscriptions go."""
    cdef uint32_t q = self.processes[slot].proxy_head, nxt
    cdef SubscriptionRecord *sub
    while q != NIL:
        sub = &self.subscriptions[q]
        nxt = sub.next
        (<CertificateQueue>self.certificate_queues[sub.peer]).push(sub.peer_key, reason)
        self.n_batcher_enqueue += 1
        subscription_free(self, q)
        q = nxt
    self.processes[slot].proxy_head = NIL
    return 0


cdef Py_ssize_t drop_peer_subscriptions(Core self, uint32_t peer) except -1:
    """Drop every subscription of `peer` (walking only its own list) and its queued
    certificates. -> number of subscriptions dropped."""
    cdef uint32_t q
    cdef Py_ssize_t n = 0
    (<CertificateQueue>self.certificate_queues[peer]).clear()
    if peer >= self.peer_heads_cap:
        return 0
    q = self.peer_heads[peer]
    while q != NIL:
        subscription_unlink_process(self, q)
        subscription_free(self, q)     # moves the peer's head on
        n += 1
        q = self.peer_heads[peer]
    return n
