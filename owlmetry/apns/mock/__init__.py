"""The project's testing server: a stand-in for APNs (HTTP/2 over TLS) for tests and
benchmarks, with Apple's request rules and reasons and every fault on demand. It ships in the
package so that `python -m owlmetry.apns.mock` runs wherever the service is installed; it never
sends a push anywhere, and the client code must not import it.

- `rules.py`: Apple's request rules, a `Verdict` for every request.
- `faults.py`: what the mock is told to do (`MockBehaviour`, `TokenFault`), faults included.
- `stats.py`: the counters (`MockStats`) that show what was lost or sent twice, and their
  HTTP/1.1 endpoint; `ReceivedRequest`, each request's headers and payload as
  `MockAPNs.record()` keeps them for tests.
- `server.py`: `MockAPNs`, the h2 server that applies all three.
- `cli.py`: the command line.

In-process: `mock = MockAPNs(cert, key, auth_key_pem, key_id, team_id, behaviour);
port = await mock.start(); ... mock.stats ...; await mock.stop()`. Out of process:
`python -m owlmetry.apns.mock --port P --cert C --key K --auth-key apns-auth-key.p8
[--stats-port S] [faults...]`; GET /stats and POST /reset on the stats port (plain HTTP/1.1),
like the benchmark harness's Node mock.
"""

from .faults import MockBehaviour, TokenFault
from .rules import PUSH_TYPES, Verdict
from .server import MockAPNs
from .stats import MockStats, ReceivedRequest

__all__ = ["PUSH_TYPES", "MockAPNs", "MockBehaviour", "MockStats", "ReceivedRequest",
           "TokenFault", "Verdict"]
