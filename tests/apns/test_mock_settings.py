"""The mock's stream limits changed at runtime, seen by a bare HTTP/2 client that reads the
mock's frames only when the test says: a new limit binds only the streams the client opens
after acknowledging it, as RFC 9113 (6.5.3) has it."""

import asyncio

import h2.config
import h2.connection
import h2.events

from owlmetry.h2client import ssl_context

from .conftest import token


async def test_a_limit_sent_before_the_first_ack_binds_only_later_streams(mock, tls_files):
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", mock.port, ssl=ssl_context(tls_files[0]), server_hostname="localhost")
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    writer.write(client.data_to_send())
    # The mock's first SETTINGS (limit 1,000), read: the client owes it an ACK.
    events = client.receive_data(await reader.read(65535))
    assert any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events)
    while not mock._connections:
        await asyncio.sleep(0.001)
    mock.set_max_streams(1)  # on its way; the client has not read it
    await asyncio.sleep(0.05)
    # The ACK of the first SETTINGS, then two streams: both allowed by the limit the client
    # knows of (it has not read the new one).
    for stream_id in (1, 3):
        client.send_headers(stream_id, [(":method", "POST"), (":scheme", "https"),
                                        (":authority", "localhost"),
                                        (":path", f"/3/device/{token(stream_id)}")])
        client.send_data(stream_id, b'{"aps":{}}', end_stream=True)
    writer.write(client.data_to_send())
    ended = set()
    while len(ended) < 2:
        data = await asyncio.wait_for(reader.read(65535), 5)
        if not data:
            break
        for event in client.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        writer.write(client.data_to_send())
    writer.close()
    assert ended == {1, 3}  # answered (403: no provider token), not a connection error
    assert mock.stats.protocol_errors == 0 and mock.stats.max_streams_changes == 1
