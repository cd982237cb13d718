"""What the risk layer announces (sent inside the transaction that wrote it).

Receivers write in the same transaction, so what they record commits or rolls back
with the alert; anything slow (network) belongs after commit.
"""

from django.dispatch import Signal

# kwargs: alerts — the RiskAlerts just raised: new ones, re-graded ones and every explicit
# repeat (``raise_alert``); not the periodic check's refresh of an ongoing condition.
alerts_raised = Signal()
