#!/usr/bin/env python3
"""A real SMTP server on loopback for Ward's mail tests.

    test-smtp-server.py DIR [PORT]

Listens on 127.0.0.1:PORT (0, the default, picks a free port), prints "READY <port>" on
stdout once it accepts connections, and stores every message it receives as
DIR/<n>.eml (the raw message, exactly as received) with DIR/<n>.json beside it (the SMTP
envelope: "mail_from" and "rcpt_tos"). Each file is written under a temporary name and
renamed, and before the server answers 250, so a client that got its reply finds the file.
Stops when stdin closes or on SIGTERM/SIGINT. Needs aiosmtpd (scripts/install-deps).
"""

import asyncio
import json
import os
import signal
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    sys.stderr.write(
        "aiosmtpd is not installed: run scripts/install-deps "
        "(or python3 -m pip install aiosmtpd)\n"
    )
    sys.exit(2)


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        raw = envelope.original_content or b""
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        for suffix, data in ((".json", json.dumps(meta).encode()), (".eml", raw)):
            tmp = base + suffix + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, base + suffix)
        return "250 Message accepted for delivery"


async def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    directory = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    os.makedirs(directory, exist_ok=True)
    store = Store(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(store, hostname="ward-test-smtp", decode_data=False),
        host="127.0.0.1",
        port=port,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)

    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # Stop when the parent goes away (its end of our stdin closes), if stdin is a pipe
    # or a terminal; otherwise only the signals stop it.
    try:
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or done.set())
    except (OSError, ValueError):
        pass
    await done.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
