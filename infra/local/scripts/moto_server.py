"""The local AWS emulator: moto's server, with DynamoDB requests made atomic.

moto's server answers each request on its own thread, and its DynamoDB model checks a
condition expression and then writes the item without a lock. Two conditional puts on
one key that arrive together can therefore both succeed (measured: 1 round in 300 with
four threads on an idle machine, more under load). Real DynamoDB never does that, and
eds depends on it: the token-refresh lease, the version heads' optimistic writes and the
deletion fence are all conditional writes. So every DynamoDB request is served under one
lock; the other services (SQS long polls above all) keep moto's concurrency.

Arguments are moto_server's (-H HOST -p PORT ...).
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_DYNAMODB = threading.Lock()
_serve = DomainDispatcherApplication.__call__


def _call(self, environ, start_response):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not target.startswith("DynamoDB_"):
        return _serve(self, environ, start_response)
    with _DYNAMODB:
        # moto builds the whole response body inside the call; read it under the lock
        # too, so that nothing of the model is touched after the lock is released.
        return list(_serve(self, environ, start_response))


DomainDispatcherApplication.__call__ = _call

if __name__ == "__main__":
    server.main()
