"""Message headers and request/reply (`stemflow.headers`, `Client.request` / `respond`)."""

from __future__ import annotations

import asyncio

import pytest
from relaynet import Overlay

from stemflow.client import ClientError, connect
from stemflow.headers import MAX_HEADER_BYTES, HeaderError, decode_headers, encode_headers
from stemflow.protocol import ProtocolError


def test_a_header_block_round_trips_and_a_message_without_headers_carries_none():
    block = encode_headers({"Content-Type": "image/png", "X-Room": "général"})
    assert decode_headers(block + b"data") == ({"Content-Type": "image/png",
                                                "X-Room": "général"}, b"data")
    assert encode_headers({}) == b"\x00\x00"


@pytest.mark.parametrize("headers, why", [({"Bad Name": "x"}, "header name"),
                                          ({"X": "a\r\nInjected: 1"}, "line break"),
                                          ({"X": "v" * MAX_HEADER_BYTES}, "limit")])
def test_headers_that_cannot_be_sent_are_refused(headers, why):
    with pytest.raises(HeaderError, match=why):
        encode_headers(headers)


@pytest.mark.parametrize("payload", [b"\x00", b"\x00\x09abc", b"\x00\x04X: 1", b"\x00\x05Xno\r\n",
                                     b"\x00\x03\xff\xfe\r"])
def test_a_malformed_block_is_a_protocol_error(payload):
    with pytest.raises(ProtocolError):
        decode_headers(payload)


@pytest.mark.timeout(60)
def test_headers_cross_the_overlay_and_a_request_gets_its_reply(tmp_path):
    o = Overlay(tmp_path, ["a", "b"], "direct_hop")

    async def run():
        requester, responder = await connect(o.addr["a"]), await connect(o.addr["b"])
        try:
            sub = await responder.subscribe("svc.echo")
            await asyncio.to_thread(o.wait_status, lambda s: any(
                i["topic"] == "svc.echo" for i in s["reports"].get("b", {}).get("interest", [])))

            async def serve():
                async for msg in sub:
                    assert msg.headers["X-Trace"] == "t1"
                    await responder.respond(msg, msg.data.upper(), headers={"X-Served-By": "b"})

            task = asyncio.create_task(serve())
            first = await requester.request("svc.echo", b"ping", headers={"X-Trace": "t1"},
                                            timeout_s=20)
            assert first.data == b"PING" and first.headers["X-Served-By"] == "b"
            again = await asyncio.gather(*(requester.request("svc.echo", b"q%d" % i,
                                                             headers={"X-Trace": "t1"})
                                           for i in range(5)))
            assert [m.data for m in again] == [b"Q%d" % i for i in range(5)]  # each its own
            with pytest.raises(ClientError, match="no responders"):
                await requester.request("svc.nobody", b"x")
            task.cancel()
        finally:
            await requester.close()
            await responder.close()

    try:
        asyncio.run(run())
    finally:
        o.close()
