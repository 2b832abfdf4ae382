"""A guild and its sessions over asyncio, on two nodes in two OS processes.

    python examples/guild_sessions.py

This process runs the guild node; it starts a second Python process for the
sessions node (this file with the argument ``sessions``). Each connected user is
one asyncio task that is a zenmon process (``node.spawn`` of a coroutine function).
Both sides monitor each other: the guild learns of each session that goes, and the
sessions learn when the guild goes. zenmon carries monitors between nodes, not
application messages: the sessions process reports its pids on its stdout.
"""

import asyncio
import sys

import zenmon

FAST = {"connector_sweep_interval": 10, "batcher_sweep_interval": 10, "demand_interval": 10}
USERS = 4


async def session(proc, user, guild_address):
    # One connection: watch the guild by registered name, then serve until told to
    # close (a work message) or until the guild goes (a Down).
    proc.monitor(("guild", guild_address))
    message = await proc.areceive(timeout=30)
    if message == "close":
        proc.exit("connection closed")       # the guild's monitor fires with this reason
    else:                                    # a zenmon.Down for the guild
        print(f"session {user}: guild down, reason {message.reason!r}", flush=True)


async def sessions_main(guild_address):
    with zenmon.Node(**FAST) as node:
        procs = [node.spawn(session, user, guild_address) for user in range(USERS)]
        print("pids", *(p.pid for p in procs), flush=True)   # tell the guild who we are
        # monitor() returns at once and subscribes in the background: wait until the
        # guild's subscriptions have reached this node (else their Downs say "noproc")
        for _ in range(3000):                    # (at most 30 s: never hang)
            if node.metrics()["zenmon.proxy.subscribers.size"] >= USERS:
                break
            await asyncio.sleep(0.01)
        for proc in procs[:2]:                   # two users disconnect
            proc.send("close")
        while any(p.alive for p in procs):       # the others end when the guild goes
            await asyncio.sleep(0.01)
    print("sessions node: stopped", flush=True)


async def guild_main():
    with zenmon.Node(**FAST) as node:
        guild = node.process(name="guild")       # registered before any session looks
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "sessions", node.address, stdout=asyncio.subprocess.PIPE)
        words = (await child.stdout.readline()).decode().split()
        assert words[0] == "pids", words
        sessions = [zenmon.Pid.parse(text) for text in words[1:]]
        refs = {guild.monitor(pid): user for user, pid in enumerate(sessions)}
        for _ in range(2):                       # exactly one Down per monitor
            down = await guild.areceive(timeout=30)
            print(f"guild: session {refs.pop(down.ref)} down, reason {down.reason!r}",
                  flush=True)
        guild.exit("guild restarting")           # the remaining sessions see it go
        async for line in child.stdout:
            print("  |", line.decode().rstrip(), flush=True)
        print("guild: sessions process exited with", await child.wait(), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sessions"]:
        asyncio.run(sessions_main(sys.argv[2]))
    else:
        asyncio.run(guild_main())
