"""Background work for webhooks, through Django Tasks (the database backend in production).

Tasks take ids, not objects, and look the row up again: the row is the truth,
so a task that runs twice or late does nothing wrong (see the services).
Run the worker with `manage.py db_worker` (docs/webhooks.md).
"""

from __future__ import annotations

from django_tasks import task


@task()
def run_webhook_event(delivery_id: str) -> str:
    """Run the webhook's agent for an accepted event."""
    from integrations.services import delivery_run

    return delivery_run(delivery_id=delivery_id)


@task()
def send_webhook_result(delivery_id: str, generation: int, try_index: int, redelivery: bool = False) -> str:
    """One attempt at POSTing a result to the callback URL; schedules its own retry."""
    from integrations.services import delivery_send_attempt

    return delivery_send_attempt(
        delivery_id=delivery_id, generation=generation, try_index=try_index, redelivery=redelivery
    )
