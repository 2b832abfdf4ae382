"""Settings: integers in milliseconds (as in ZenMonitor and ZeroMQ), changeable at run time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .protocol import MAX_BATCH, MAX_FRAME, MAX_SUMMARY_INTERVAL, MAX_SUMMARY_SIZE

DISPATCH_MODES = ("token_bucket", "unlimited", "adaptive")


@dataclass(frozen=True)
class Config:
    """A node's settings. Defaults are ZenMonitor's from connector_sweep_interval to
    truncation_depth; the rest are zenmon's own.

    dispatch_mode: "token_bucket" (ZenMonitor's: at most demand_amount DOWNs per
    demand_interval node-wide), "unlimited" (no throttle), or "adaptive" (every
    adaptive_interval ms, each inbox is topped up to at most adaptive_backlog
    messages: a storm drains as fast as its watchers read, and a work message never
    waits behind more than adaptive_backlog DOWNs). In adaptive mode a node also asks
    the nodes it watches (in HELLO, for each new session) for dead summaries of at most
    adaptive_summary_size certificates every adaptive_summary_interval ms instead of
    their batcher_chunk_size per batcher_sweep_interval, so remote deaths are not held
    back at the source either.

    What one peer may cost this node (see docs/protocol.md, "Limits"): max_frame_size
    (bytes; larger frames are refused by ZeroMQ and the connection is dropped),
    max_batch (instructions in one SUBSCRIBE, certificates in one DEAD_SUMMARY; a
    larger one ends the session), sndhwm / rcvhwm (messages queued per connection, for
    sockets made after the change), max_unacked / max_unacked_bytes (messages of one
    session kept for resending; when full, nothing new is sent to that session until
    it acks) and resend_interval (ms: at most one resend burst per session per
    interval, whatever the NACK rate).

    Liveness has two phases. A peer whose connection is gone (crash, host loss,
    partition: ZeroMQ's own ZMTP heartbeats, which run in libzmq's threads without
    the GIL, stop being answered) is down once it has been silent for
    heartbeat_timeout. A peer whose connection is alive but whose Python does not
    answer (a long GIL-holding call, a full GC) is down only once it has been silent
    for pause_timeout (read as at least heartbeat_timeout). ZMTP settings follow
    heartbeat_interval / heartbeat_timeout when a session's socket is opened.
    """

    connector_sweep_interval: int = 100
    connector_chunk_size: int = 5000
    batcher_sweep_interval: int = 100
    batcher_chunk_size: int = 5000
    demand_interval: int = 100
    demand_amount: int = 1000
    max_binary_size: int = 1024
    truncation_depth: int = 3
    heartbeat_interval: int = 200
    heartbeat_timeout: int = 1000
    pause_timeout: int = 15000
    connect_timeout: int = 1000
    dispatch_mode: str = "token_bucket"
    adaptive_backlog: int = 128
    adaptive_interval: int = 1
    adaptive_summary_size: int = 1000
    adaptive_summary_interval: int = 5
    max_frame_size: int = 4 * 1024 * 1024
    max_batch: int = 10_000
    sndhwm: int = 1000
    rcvhwm: int = 4
    max_unacked: int = 64
    max_unacked_bytes: int = 16 * 1024 * 1024
    resend_interval: int = 100

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "dispatch_mode":
                if value not in DISPATCH_MODES:
                    raise ValueError(f"dispatch_mode must be one of {DISPATCH_MODES}, "
                                     f"not {value!r}")
                continue
            if type(value) is not int:
                raise ValueError(f"{field.name} must be an int, not {value!r}")
            minimum = 4 if field.name == "max_binary_size" else 1
            if not minimum <= value <= 2**31 - 1:
                raise ValueError(f"{field.name} must be in {minimum}..2**31-1, not {value}")
        if (self.adaptive_summary_size > MAX_SUMMARY_SIZE
                or self.adaptive_summary_interval > MAX_SUMMARY_INTERVAL):
            raise ValueError(f"adaptive_summary_size must be at most {MAX_SUMMARY_SIZE} and "
                             f"adaptive_summary_interval at most {MAX_SUMMARY_INTERVAL} ms "
                             "(what a HELLO may ask for)")
        if self.max_frame_size > MAX_FRAME or self.max_frame_size < 65536:
            raise ValueError(f"max_frame_size must be in 65536..{MAX_FRAME}")
        if self.max_batch > MAX_BATCH:
            raise ValueError(f"max_batch must be at most {MAX_BATCH}")
        if self.truncation_depth > 32:
            raise ValueError("truncation_depth must be at most 32 (the codec's nesting limit)")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")

    def replace(self, **settings: object) -> Config:
        """A copy with `settings` changed; unknown names or bad values raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **settings)  # type: ignore[arg-type]

    @property
    def maximum_mps(self) -> float:
        """The token bucket's ceiling: demand_amount * 1000 / demand_interval per second."""
        return self.demand_amount * 1000 / self.demand_interval
