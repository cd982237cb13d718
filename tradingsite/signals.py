"""What the platform's runtime announces: its parts started, or it is stopping.

Sent with ``send_robust`` from ``tradingsite.runtime`` (embedded ``runplatform``) and from
a production Celery worker's ready / shutting-down signals: a receiver that fails is
logged and never stops the platform.
"""

from django.dispatch import Signal

# kwargs: mode ("embedded", "web", "worker"), host, pid, details (str); platform (the
# embedded ``tradingsite.runtime.Platform``, absent for a production worker)
platform_started = Signal()
# kwargs: mode, host, pid, reason (str), clean (bool: the shutdown sequence finished in
# time), platform (as above)
platform_stopping = Signal()
