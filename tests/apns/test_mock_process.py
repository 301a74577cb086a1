"""The mock as later dispatcher tests and benchmarks use it: another process, counters over HTTP."""

import asyncio
import json
import sys
import urllib.request

from .conftest import PAYLOAD, token
from .identity import KEY_ID, TEAM_ID


async def test_mock_runs_out_of_process(make_client, tls_files, auth_key, tmp_path):
    key_file = tmp_path / "auth.p8"
    key_file.write_bytes(auth_key)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "owlmetry.apns.mock", "--port", "0", "--stats-port", "0",
        "--cert", tls_files[0], "--key", tls_files[1], "--auth-key", str(key_file),
        "--key-id", KEY_ID, "--team-id", TEAM_ID, stdout=asyncio.subprocess.PIPE)
    try:
        ready = json.loads(await process.stdout.readline())
        client = make_client(production_url=f"https://127.0.0.1:{ready['port']}")
        assert (await client.send(token(1), PAYLOAD)).ok
        url = f"http://127.0.0.1:{ready['stats_port']}/stats"
        stats = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
        assert stats["requests"] == 1 and stats["unique_delivered"] == 1
    finally:
        process.terminate()
        assert await process.wait() == 0
