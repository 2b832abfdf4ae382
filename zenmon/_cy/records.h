/* The records of the Core's slabs (declared for Cython in zenmon/_core.pxd).
 *
 * A field that means one thing while the record is in use and another while it is
 * free (or, for a link record, once it has fired) is an anonymous union, so each
 * meaning has its own name and the record does not grow. Cython cannot declare
 * anonymous unions itself, hence this header (C11 anonymous unions; gcc, clang and
 * MSVC all accept them).
 */
#ifndef ZENMON_RECORDS_H
#define ZENMON_RECORDS_H

#include <stdint.h>

typedef struct {
    uint32_t gen;                 /* bumped on free: a ref is (gen << 32 | slot) */
    uint32_t subscriber;          /* process slot of the watcher */
    union {
        uint32_t target;          /* LIVE: its target slot */
        uint32_t other_conn;      /* FIRED link record: the other end's conn */
    };
    union {
        uint32_t t_prev;          /* LIVE: previous monitor of its target */
        uint32_t other_key_high;  /* FIRED link record: the other end's key, high half */
    };
    union {
        uint32_t t_next;          /* LIVE: next monitor of its target */
        uint32_t other_key_low;   /* FIRED link record: the other end's key, low half */
        uint32_t next_free;       /* FREE: next free monitor record */
    };
    uint32_t s_prev;              /* the watcher's own list */
    uint32_t s_next;
    uint32_t flags;               /* state | FLAG_BY_NAME | FLAG_LINK */
} MonitorRecord;

typedef struct {
    uint64_t key;                 /* pid id (local or remote) or remote name key */
    uint32_t conn;                /* 0: this node; n: connector n; NIL: free */
    union {
        uint32_t head;            /* in use: its first monitor record */
        uint32_t next_free;       /* free: next free target record */
    };
} TargetRecord;

typedef struct {
    uint32_t gen;                 /* a pid id is (gen << 32 | slot) */
    uint32_t alive;               /* PROCESS_ALIVE | PROCESS_BULK | ..., 0 once dead */
    uint32_t watch_head;          /* monitors this process holds (as subscriber) */
    union {
        uint32_t proxy_head;      /* alive: subscriptions of remote peers on it */
        uint32_t next_free;       /* dead: next free process slot */
    };
} ProcessRecord;

typedef struct {
    uint64_t peer_key;            /* the key the peer used: pid id or its name key */
    uint32_t peer;                /* peer index; NIL when free */
    union {
        uint32_t next;            /* in use: next subscription on the same process */
        uint32_t next_free;       /* free: next free subscription record */
    };
    uint32_t prev;                /* previous subscription on the same process */
    uint32_t slot;                /* the process slot it is on */
    uint32_t peer_prev;           /* the peer's own list (drop_peer walks only its own) */
    uint32_t peer_next;
} SubscriptionRecord;

#endif
