"""A counting TCP proxy in front of Redis: what each client sends, counted per command name.

Loopback only. It parses the RESP requests clients send (arrays of bulk strings, and inline commands) and
forwards bytes unchanged in both directions. Commands a Lua script issues inside the server never cross
the wire, so they are not counted: the figure is "commands the client sends", which is what a per-command
bill counts. Run standalone: `python -m bench.proxy --listen 7379 --upstream 6379`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
from collections import Counter
from multiprocessing.connection import Connection

# What a per-command bill leaves out: the health check and a transaction's wrapper (Upstash bills only the
# entries), which is also what `jobq gateway`'s own counter leaves out.
NOT_BILLED = frozenset({"PING", "MULTI", "EXEC"})


class RespCounter:
    """Incremental RESP request parser: feed bytes, it counts complete commands by upper-cased name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            consumed = self._one()
            if consumed == 0:
                return
            del self._buffer[:consumed]

    def _one(self) -> int:
        """Parse one command at the head of the buffer; return bytes consumed, or 0 if incomplete."""
        buf = self._buffer
        if not buf:
            return 0
        line_end = buf.find(b"\r\n")
        if line_end < 0:
            return 0
        if buf[0:1] != b"*":  # inline command: one line, words separated by spaces
            words = bytes(buf[:line_end]).split()
            if words:
                self.counts[words[0].decode("latin-1").upper()] += 1
            return line_end + 2
        count = int(buf[1:line_end])
        pos = line_end + 2
        name = ""
        for index in range(count):
            header_end = buf.find(b"\r\n", pos)
            if header_end < 0:
                return 0
            length = int(buf[pos + 1 : header_end])
            start = header_end + 2
            if len(buf) < start + length + 2:
                return 0
            if index == 0:
                name = bytes(buf[start : start + length]).decode("latin-1").upper()
            pos = start + length + 2
        if name:
            self.counts[name] += 1
        return pos


class CountingProxy:
    """Forward 127.0.0.1:<port> to an upstream Redis, counting every client command."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 6379) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None

    def total(self) -> int:
        return sum(self.counts.values())

    def billed(self) -> int:
        """Commands as Upstash bills them: all but NOT_BILLED."""
        return sum(n for name, n in self.counts.items() if name not in NOT_BILLED)

    def reset(self) -> None:
        self.counts.clear()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        parser = RespCounter()

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                parser.feed(data)
                self.counts.update(parser.counts)
                parser.counts.clear()
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()


class ProxyProcess:
    """The counting proxy in a process of its own, its counts read over a pipe.

    A measured client must not share its interpreter with the proxy: parsing every command the gateway
    forwards would take the client's GIL (over a quarter of the samples of an in-process jobq consumer),
    a handicap the reference queues, which run in their own processes, never paid.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited loop or threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_counts, args=(child, *self.upstream), daemon=True)

    def __enter__(self) -> ProxyProcess:
        self._process.start()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the counting proxy did not start")
        self.port = int(self._conn.recv())
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()

    def total(self) -> int:
        return self._ask("total")

    def billed(self) -> int:
        """Commands as Upstash bills them (PING, MULTI and EXEC free)."""
        return self._ask("billed")

    def _ask(self, question: str) -> int:
        self._conn.send(question)
        if not self._conn.poll(10):
            raise RuntimeError("the counting proxy did not answer")
        return int(self._conn.recv())


def _serve_counts(conn: Connection, upstream_host: str, upstream_port: int) -> None:
    """The proxy process: serve, answer count questions from the pipe, stop when asked (or orphaned)."""

    async def serve() -> None:
        proxy = CountingProxy(upstream_host=upstream_host, upstream_port=upstream_port)
        conn.send(await proxy.start())
        stopped = asyncio.Event()

        def answer() -> None:
            try:
                question = conn.recv()
            except EOFError:  # the parent is gone
                question = "stop"
            if question == "stop":
                stopped.set()
            else:
                conn.send(proxy.total() if question == "total" else proxy.billed())

        asyncio.get_running_loop().add_reader(conn.fileno(), answer)
        await stopped.wait()
        await proxy.stop()

    asyncio.run(serve())


async def _main(listen: int, upstream: int, seconds: float) -> None:
    proxy = CountingProxy(upstream_port=upstream)
    await proxy.start(listen)
    print(f"counting proxy on 127.0.0.1:{proxy.port} -> 127.0.0.1:{upstream}", flush=True)
    try:
        await asyncio.sleep(seconds)
    finally:
        await proxy.stop()
        for name, count in proxy.counts.most_common():
            print(f"{name:20} {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", type=int, default=7379)
    parser.add_argument("--upstream", type=int, default=6379)
    parser.add_argument("--seconds", type=float, default=3600)
    args = parser.parse_args()
    asyncio.run(_main(args.listen, args.upstream, args.seconds))


if __name__ == "__main__":
    main()
