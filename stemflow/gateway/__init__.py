"""The web gateway: browsers reach the overlay through a WebSocket server in their datacenter.

`wire` owns the binary WebSocket format (sans-IO), `envelope` the browser library's message
envelope in Python (sans-IO), `window` what a gateway keeps of each topic
and how far each browser may lag behind it (sans-IO), `relaylink` the gateway's connections to
its relay (through `stemflow.client` only), `server` the aiohttp application that ties browsers
to both, `__main__` the `stemflow gateway` command. The browser side is `static/stemflow.js`;
the format both speak is written down in docs/gateway.md.
"""
