"""A connection reads what its peer sent a part per event-loop turn: a read holding hundreds of
answers does not fill one turn that every other request of the server waits behind, and the
answers that came before a connection's end still count as answers."""

import asyncio
import uuid
from types import SimpleNamespace

import h2.config
import h2.connection
import h2.events
import h2.settings

from owlmetry.h2client import Exchange, Failure, Request, hpack_encoder
from owlmetry.h2client.connection import READ_PER_TURN, Connection

from .conftest import FixedAuthorization

PUSHES = 600  # ~44 bytes an answer: more than three READ_PER_TURN in one read


def open_connection() -> tuple[Connection, h2.connection.H2Connection, list[bytes]]:
    writes: list[bytes] = []
    transport = SimpleNamespace(write=writes.append, is_closing=lambda: False,
                                get_extra_info=lambda name: None, close=lambda: None)
    conn = Connection("localhost", 443, FixedAuthorization(b"Bearer x"), 1000,
                      on_change=lambda: None, on_lost=lambda conn: None)
    conn.connection_made(transport)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding=None))
    peer.initiate_connection()
    peer.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: PUSHES})
    peer.receive_data(b"".join(writes))
    writes.clear()
    conn.data_received(peer.data_to_send())
    peer.receive_data(b"".join(writes))  # the client's SETTINGS ACK: the new limit holds
    writes.clear()
    assert conn.usable
    return conn, peer, writes


def pushes_answered_in_one_read(conn, peer, writes) -> tuple[list[Exchange], bytes]:
    """PUSHES requests on `conn`, and the one read that holds every answer to them."""
    loop = asyncio.get_running_loop()
    pushes = []
    for _ in range(PUSHES):
        push = Exchange(Request(hpack_encoder.POST, hpack_encoder.path_field(b"/x"), b"", b"{}"),
                        loop.time() + 60)
        push.fut = loop.create_future()
        conn.submit(push)
        pushes.append(push)
    conn._flush()
    for event in peer.receive_data(b"".join(writes)):
        if isinstance(event, h2.events.RequestReceived):
            peer.send_headers(event.stream_id, [(b":status", b"200"),
                                                (b"apns-id", str(uuid.uuid4()).encode())],
                              end_stream=True)
    return pushes, peer.data_to_send()


async def test_a_read_of_many_answers_is_taken_a_part_per_turn():
    conn, peer, writes = open_connection()
    pushes, read = pushes_answered_in_one_read(conn, peer, writes)
    assert len(read) > 3 * READ_PER_TURN

    conn.data_received(read)
    answered = [sum(push.fut.done() for push in pushes)]
    while answered[-1] < PUSHES:
        await asyncio.sleep(0)  # one turn of the loop, as any other task would take
        answered.append(sum(push.fut.done() for push in pushes))

    assert 0 < answered[0] < PUSHES / 2
    assert len(answered) > len(read) // READ_PER_TURN
    assert all(push.fut.result() is push and push.status == 200 for push in pushes)


async def test_answers_read_before_the_end_of_a_connection_count():
    conn, peer, writes = open_connection()
    pushes, read = pushes_answered_in_one_read(conn, peer, writes)

    conn.data_received(read)
    conn.connection_lost(None)  # before the rest of the read had its turns

    assert [push.fut.result() for push in pushes] == pushes
    assert not any(push.fut.result() is Failure.LOST for push in pushes)
    assert {push.status for push in pushes} == {200}
