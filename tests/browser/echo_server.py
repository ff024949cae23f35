#!/usr/bin/env python3
"""The server of tests/har.rs's session with Chromium (python websockets 17.4).

Accepts the subprotocol "chat.v1" and permessage-deflate, as websockets does by default;
pings the client once when it connects (Chrome answers, and DevTools shows neither); then
sends every data message back unchanged. Prints "ready" once listening; exits after one
connection has ended, or on SIGTERM.
"""

import argparse
import asyncio
import signal

from websockets.asyncio.server import serve


async def main(port):
    done = asyncio.Event()

    async def handler(ws):
        try:
            pong = await ws.ping(b"wsnoop-ping")
            await pong
            async for message in ws:
                await ws.send(message)
        finally:
            done.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    async with serve(handler, "127.0.0.1", port, subprotocols=["chat.v1"], max_size=None):
        print("ready", flush=True)
        await done.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
