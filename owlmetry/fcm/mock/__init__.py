"""The project's testing server for FCM: a stand-in for FCM HTTP v1's `messages:send` and
Google's OAuth2 token endpoint (TLS; HTTP/2, and HTTP/1.1 for OAuth clients, on one port), with
FCM's rules and error bodies and faults on demand. It ships in the package so that
`python -m owlmetry.fcm.mock` runs wherever the service is installed; it never sends anything
anywhere, and the client code must not import it. Built on the APNs mock's h2 server, faults
and stats (`owlmetry.apns.mock`), which it extends.

- `rules.py`: Google's rules, an `Answer` for every request; the access tokens it issues.
- `faults.py`: `FcmBehaviour`, what the mock is told to do, faults included.
- `stats.py`: `FcmStats`, the counters that show what was lost or sent twice.
- `server.py`: `MockFCM`, the server that applies all three.
- `cli.py`: the command line.

In-process: `mock = MockFCM(cert, key, service_account, behaviour); await mock.start()`; point
the client at `mock.url`, and the service account's `token_uri` at `mock.token_uri`. Out of
process: `python -m owlmetry.fcm.mock --port P --cert C --key K --service-account FILE
[--stats-port S] [faults...]`; GET /stats and POST /reset on the stats port.
"""

from .faults import FcmBehaviour
from .rules import Answer
from .server import MockFCM
from .stats import FcmStats

__all__ = ["Answer", "FcmBehaviour", "FcmStats", "MockFCM"]
