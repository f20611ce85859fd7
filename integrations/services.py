"""Writes for webhooks and their deliveries: keyword-only, typed, atomic.

The inbound path (event_receive) decides, in this order: body size, the
X-Combo-Delivery header's shape, the signature (verified over the raw bytes
before anything parses them), enabled, idempotent replay, JSON, question.
Every refusal is stored as a rejected delivery and raised as its ComboError.
The agent runs later, in a task (tasks.run_webhook_event → delivery_run), and
the result is sent by tasks.send_webhook_result → delivery_send_attempt.
delivery_reap_interrupted marks the runs a killed worker left `running`, and
delivery_reap_callbacks takes up the results whose sending one left `pending`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from accounts.models import User
from agents.models import Agent, Message
from agents.services import session_create
from combo import rowlocks
from combo.changes import changed_fields
from combo.errors import ComboError, ErrorCode
from integrations import signing, ssrf, tasks, template, vault
from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery
from integrations.transport import CallbackTransport, DeliveryFailed

logger = logging.getLogger("combo.webhooks")

# X-Combo-Delivery: printable ASCII without spaces (GUIDs, ULIDs, "evt_..." ids).
_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_MAX_RETRY_AFTER = 3600.0


# --- Webhooks ---------------------------------------------------------------


@dataclass(frozen=True)
class WebhookWithSecret:
    """A webhook and its plain secret, returned once (create, rotate) and never stored."""

    webhook: Webhook
    secret: str


def _check_template(question_template: str) -> None:
    bad = template.invalid_placeholders(question_template)
    if bad:
        message = "Placeholders must be dotted paths like {{ pull_request.title }}: " + ", ".join(bad)
        raise ComboError(ErrorCode.VALIDATION_FAILED, message, errors={"question_template": [message]})


def _check_callback_url(callback_url: str) -> None:
    if not callback_url:
        return
    try:
        ssrf.parse_url(callback_url)
    except ValueError as exc:
        raise ComboError(
            ErrorCode.VALIDATION_FAILED, f"callback_url: {exc}", errors={"callback_url": [str(exc)]}
        ) from None
    ssrf.check_callback_url(callback_url)


def _check_agent(owner: User, agent: Agent) -> None:
    """In the transaction that writes the webhook: the agent is locked, and one deleted since it was read is refused.

    (Otherwise the write failed at commit on the missing agent, a 500.)
    """
    if agent.owner_id != owner.pk or not rowlocks.lock(Agent.objects.filter(pk=agent.pk)):
        # Another user's agent reads exactly like one that does not exist.
        raise ComboError(ErrorCode.VALIDATION_FAILED, "No agent with this id.", errors={"agent_id": ["No agent with this id."]})


@transaction.atomic
def webhook_create(
    *,
    owner: User,
    agent: Agent,
    name: str,
    question_template: str = "",
    callback_url: str = "",
    enabled: bool = True,
    require_timestamp: bool = False,
) -> WebhookWithSecret:
    _check_agent(owner, agent)
    _check_template(question_template)
    _check_callback_url(callback_url)
    secret = vault.generate_secret()
    webhook = Webhook(
        owner=owner,
        agent=agent,
        name=name,
        question_template=question_template,
        callback_url=callback_url,
        enabled=enabled,
        require_timestamp=require_timestamp,
        secret_encrypted=vault.encrypt(secret),
        secret_hint=vault.hint(secret),
    )
    webhook.full_clean()
    webhook.save()
    logger.info("webhook %s created for agent %s", webhook.id, agent.id)
    return WebhookWithSecret(webhook=webhook, secret=secret)


_UPDATABLE = {"name", "agent", "enabled", "question_template", "callback_url", "require_timestamp"}


@transaction.atomic
def webhook_update(*, webhook: Webhook, precondition: Callable[[Webhook], None] | None = None, **fields) -> Webhook:
    """Change `fields` of the webhook as it is now, under its row's lock.

    `webhook` may have been read before another request rotated its secret or
    deleted it: saving it as read would put the old secret back, or insert a
    deleted webhook again (Django inserts when an update finds no row).
    Deleted: a 404. `precondition(webhook)` runs under the lock on the webhook
    as stored, before any change; its ComboError (an edit form opened on an
    older version, say) leaves everything as it was. Values equal to the
    stored ones change nothing: with no other change the webhook is not
    saved, so its `updated_at` (and its ETag) stays.
    """
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise TypeError(f"webhook_update() cannot change {', '.join(sorted(unknown))}")
    # A template or callback URL equal to the webhook's as read was vetted when it was stored
    # (the URL's check resolves its host: not again for a value that is not new).
    new = changed_fields(webhook, fields)
    if "agent" in fields:
        _check_agent(webhook.owner, fields["agent"])
    if "question_template" in new:
        _check_template(fields["question_template"])
    if "callback_url" in new:
        _check_callback_url(fields["callback_url"])
    rowlocks.lock_stored(webhook, precondition)
    changed = changed_fields(webhook, fields)
    if not changed:
        return webhook
    for name, value in changed.items():
        setattr(webhook, name, value)
    webhook.full_clean()
    webhook.save()
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook, precondition: Callable[[Webhook], None] | None = None) -> None:
    """Deletes the webhook with its deliveries; locked first, so a delivery recorded meanwhile waits for it.

    `precondition(webhook)` runs under the lock on the webhook as stored (an
    If-Match naming an older version, say); its ComboError deletes nothing.
    With a precondition, a webhook deleted since it was read is a 404.
    """
    rowlocks.lock_to_delete(webhook, precondition)
    webhook.delete()


@transaction.atomic
def webhook_rotate_secret(*, webhook: Webhook, grace_hours: int | None = None) -> WebhookWithSecret:
    """A new secret; the old one stays valid for `grace_hours` (default: the setting; 0 ends it now).

    Only one previous secret is kept: rotating again within the grace period
    retires the oldest at once.
    """
    grace = settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS if grace_hours is None else grace_hours
    locked = Webhook.objects.select_for_update().get(pk=webhook.pk)
    now = timezone.now()
    secret = vault.generate_secret()
    if grace > 0:
        locked.previous_secret_encrypted = locked.secret_encrypted
        locked.previous_secret_expires_at = now + timedelta(hours=grace)
    else:
        locked.previous_secret_encrypted = ""
        locked.previous_secret_expires_at = None
    locked.secret_encrypted = vault.encrypt(secret)
    locked.secret_hint = vault.hint(secret)
    locked.secret_rotated_at = now
    locked.save()
    logger.info("webhook %s secret rotated (previous valid %sh)", locked.id, grace)
    return WebhookWithSecret(webhook=locked, secret=secret)


def _candidate_secrets(webhook: Webhook, at) -> list[str]:
    """The secrets a signature may be made with right now: current first, then the previous one in its grace."""
    try:
        secrets = [vault.decrypt(webhook.secret_encrypted)]
        if webhook.previous_secret_valid(at):
            secrets.append(vault.decrypt(webhook.previous_secret_encrypted))
    except vault.SecretUnreadable as exc:
        logger.error("webhook %s: %s", webhook.id, exc)
        raise ComboError(
            ErrorCode.INTERNAL_ERROR, "This webhook's secret cannot be read on the server; its owner must rotate it."
        ) from None
    return secrets


# --- Inbound events ---------------------------------------------------------


@dataclass(frozen=True)
class InboundCall:
    """What the events endpoint read from the request, before any decision."""

    body: bytes | None  # None when the body is over the limit (and was not read whole)
    body_size: int
    signature: str | None
    delivery_id: str | None


@dataclass(frozen=True)
class Receipt:
    delivery: WebhookDelivery
    replayed: bool


def delivery_record_rejection(
    *,
    webhook: Webhook,
    error: ComboError,
    sender_delivery_id: str = "",
    signature_form: str = "",
    body_size: int = 0,
    body_sha256: str = "",
) -> WebhookDelivery:
    """Store a refused call: the reason and the request's shape, never its signature or body."""
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        status=WebhookDelivery.Status.REJECTED,
        reason_code=error.error.code,
        reason_message=error.message[:500],
        sender_delivery_id=sender_delivery_id[:200],
        signature_form=signature_form,
        body_size=body_size,
        body_sha256=body_sha256,
        finished_at=timezone.now(),
    )
    logger.info(
        "webhook %s: rejected call %s (%s %s)", webhook.id, delivery.id, error.error.code, error.error.slug
    )
    return delivery


def _signature_form(header: str | None) -> str:
    try:
        return signing.parse(header).form
    except ComboError:
        return ""


MAX_EVENT_DEPTH = 64


def _parse_event(body: bytes):
    def refuse_constant(value):
        raise ValueError(f"{value} is not valid JSON")

    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ComboError(ErrorCode.EVENT_NOT_JSON, "The event body is not valid UTF-8 JSON.") from None
    if not isinstance(payload, dict):
        raise ComboError(ErrorCode.EVENT_NOT_JSON, "The event body must be a JSON object.")
    problem = _storable_problem(payload)
    if problem:
        raise ComboError(ErrorCode.EVENT_NOT_JSON, problem)
    return payload


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable_problem(payload) -> str | None:
    """Why the payload cannot be stored and re-encoded safely, walking it without recursion."""
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_EVENT_DEPTH:
            return f"The event body is nested deeper than {MAX_EVENT_DEPTH} levels."
        if isinstance(value, str):
            if "\x00" in value:
                # PostgreSQL's jsonb and text cannot store U+0000.
                return "The event body must not contain NUL (\\u0000) characters."
            if _SURROGATE.search(value):
                # A JSON escape such as "\\ud800" alone decodes to text no UTF-8 can carry.
                return "The event body must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff)."
        elif isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return None


def signature_check(webhook: Webhook | None, call: InboundCall) -> signing.Verified | None:
    """The call's verified signature, or None when it is not signed with the webhook's secret (nothing recorded).

    Decides whose rate-limit budget a call spends (integrations.api): a signed
    call its webhook's, anything else its sender's address's, so forged calls
    cannot use up a webhook's budget. Pass it on to `event_receive`.
    """
    if webhook is None or call.body is None:
        return None
    try:
        return _verify(webhook, call, timezone.now())
    except ComboError:
        return None


def _verify(webhook: Webhook, call: InboundCall, now) -> signing.Verified:
    """The call's signature checked against the webhook's current (and previous) secret; ComboError if not."""
    return signing.verify(
        secrets=_candidate_secrets(webhook, now),
        body=call.body,
        header=call.signature,
        require_timestamp=webhook.require_timestamp,
        tolerance=settings.COMBO_WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS,
        now=now.timestamp(),
    )


def event_too_large_error() -> ComboError:
    """The refusal of an event body over COMBO_WEBHOOK_MAX_BODY_BYTES (also sent by the cap inside daphne)."""
    limit = settings.COMBO_WEBHOOK_MAX_BODY_BYTES
    return ComboError(ErrorCode.PAYLOAD_TOO_LARGE, f"The event body is over the limit of {limit} bytes.")


def event_receive(*, webhook: Webhook, call: InboundCall, verified: signing.Verified | None = None) -> Receipt:
    """Decide on one inbound call; a refusal is recorded, then raised as its ComboError.

    `verified`: the call's signature as `signature_check` found it, if it was
    checked already (None: checked here, which also says why it fails).
    """
    now = timezone.now()
    sender_id = (call.delivery_id or "").strip()
    shape = {
        "sender_delivery_id": sender_id if _DELIVERY_ID.match(sender_id) else "",
        "signature_form": _signature_form(call.signature),
        "body_size": call.body_size,
        "body_sha256": hashlib.sha256(call.body).hexdigest() if call.body is not None else "",
    }

    def refuse(error: ComboError):
        delivery_record_rejection(webhook=webhook, error=error, **shape)
        return error

    if call.body is None:
        raise refuse(event_too_large_error())
    if sender_id and not shape["sender_delivery_id"]:
        raise refuse(
            ComboError(ErrorCode.BAD_REQUEST, "X-Combo-Delivery must be 1-200 printable ASCII characters, no spaces.")
        )
    try:
        verified = verified if verified is not None else _verify(webhook, call, now)
    except ComboError as exc:
        if exc.error is ErrorCode.INTERNAL_ERROR:
            raise
        raise refuse(exc) from None
    if not webhook.enabled:
        raise refuse(ComboError(ErrorCode.WEBHOOK_DISABLED))

    if sender_id:
        replay = _replay(webhook, sender_id, shape["body_sha256"], now, refuse)
        if replay is not None:
            return Receipt(delivery=replay, replayed=True)
    try:
        payload = _parse_event(call.body)
    except ComboError as exc:
        raise refuse(exc) from None
    question = template.question_for(webhook.question_template, payload)
    if not question:
        raise refuse(ComboError(ErrorCode.EVENT_QUESTION_EMPTY))
    try:
        delivery = _accept(
            webhook=webhook,
            payload=payload,
            question=question[: settings.COMBO_MAX_QUESTION_CHARS],
            idempotency_key=sender_id or None,
            signed_with_previous_secret=verified.secret_index > 0,
            **shape,
        )
    except IntegrityError:
        # The same X-Combo-Delivery arrived twice at once; the other copy won.
        replay = _replay(webhook, sender_id, shape["body_sha256"], now, refuse) if sender_id else None
        if replay is None:
            raise
        return Receipt(delivery=replay, replayed=True)
    return Receipt(delivery=delivery, replayed=False)


def _replay(webhook: Webhook, key: str, body_sha256: str, now, refuse) -> WebhookDelivery | None:
    """The delivery an X-Combo-Delivery id already names, if still within the idempotency window."""
    existing = WebhookDelivery.objects.replay_of(webhook, key).first()
    if existing is None:
        return None
    if existing.created_at < now - timedelta(hours=settings.COMBO_WEBHOOK_IDEMPOTENCY_HOURS):
        # Past the window: the id is free again; the old delivery keeps it as sender_delivery_id.
        WebhookDelivery.objects.filter(pk=existing.pk, idempotency_key=key).update(idempotency_key=None)
        return None
    if existing.body_sha256 != body_sha256:
        raise refuse(
            ComboError(ErrorCode.CONFLICT, "This X-Combo-Delivery id was already used with a different body.")
        )
    WebhookDelivery.objects.filter(pk=existing.pk).update(replay_count=F("replay_count") + 1)
    existing.refresh_from_db()
    logger.info("webhook %s: replayed delivery %s", webhook.id, existing.id)
    return existing


@transaction.atomic
def _accept(*, webhook: Webhook, payload: dict, question: str, idempotency_key: str | None, **fields) -> WebhookDelivery:
    # The session is made now so the 202 can name it; the answer is written into it later.
    session = session_create(agent=webhook.agent, owner=webhook.owner, title=question[:80])
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        status=WebhookDelivery.Status.QUEUED,
        idempotency_key=idempotency_key,
        payload=payload,
        question=question,
        session=session,
        **fields,
    )
    # In the same transaction as the row (database task backend): an accepted
    # delivery always has its run queued, and a rolled-back one never does.
    tasks.run_webhook_event.enqueue(str(delivery.id))
    logger.info("webhook %s: accepted delivery %s", webhook.id, delivery.id)
    return delivery


# --- Running the agent ------------------------------------------------------


def delivery_run(*, delivery_id: str) -> str:
    """Run the webhook's agent for a queued delivery and store the outcome; then send it, if there is a callback URL."""
    from agents.completions import complete_sync

    claimed = WebhookDelivery.objects.filter(id=delivery_id, status=WebhookDelivery.Status.QUEUED).update(
        status=WebhookDelivery.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        # Already run (a task delivered twice) or gone: nothing runs twice.
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("webhook", "webhook__owner", "session").filter(id=delivery_id).first()
    if delivery is None:
        return "gone"  # its webhook was deleted just now
    webhook = delivery.webhook
    # The agent the event was accepted for (its session's), even if the webhook was re-pointed since.
    agent_id = delivery.session.agent_id if delivery.session else webhook.agent_id
    error: ComboError | None = None
    outcome: dict = {}
    try:
        prepared, run = complete_sync(
            owner=webhook.owner, agent_id=agent_id, question=delivery.question, session_id=delivery.session_id
        )
    except ComboError as exc:
        error = exc
    except Exception:
        logger.exception("webhook delivery %s: the run failed", delivery.id)
        error = ComboError(ErrorCode.INTERNAL_ERROR)
    else:
        error = run.error
        if error is None and run.status != Message.Status.COMPLETE:
            error = ComboError(ErrorCode.INTERNAL_ERROR, f"The answer ended as {run.status}.")
        outcome = {
            "answer": run.answer,
            "references": prepared.references,
            "session_id": prepared.session_id,
            "message_id": prepared.message_id,
        }
    with transaction.atomic():
        # Over whatever is stored: the claim made this the delivery's only run, and a
        # reaper's mark (delivery_reap_interrupted) is only a guess that the outcome replaces.
        stored = WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED if error else WebhookDelivery.Status.SUCCEEDED,
            error_code=error.error.code if error else None,
            error_message=error.message[:500] if error else "",
            finished_at=timezone.now(),
            **outcome,
        )
        if not stored:
            # The webhook (and its deliveries) was deleted while the agent answered:
            # the answer stays in the session; there is nothing to record or send.
            logger.info("webhook delivery %s: deleted while it ran", delivery.id)
            return "gone"
        delivery.refresh_from_db()
        if webhook.callback_url:
            delivery_callback_start(delivery=delivery)
    logger.info("webhook delivery %s: %s", delivery.id, delivery.status)
    return delivery.status


INTERRUPTED_RUN_MESSAGE = (
    "The server stopped before this event's answer finished; "
    "send the event again with a new X-Combo-Delivery id to retry."
)


def delivery_reap_interrupted(*, older_than_seconds: int | None = None, dry_run: bool = False) -> int:
    """Mark runs left `running` by a task worker that died as failed (20004), and send that result.

    A worker killed mid-run (SIGKILL, OOM, `serve` after the grace period)
    records nothing, and the task queue does not run the event again (its own
    task row stays running too). Like the answer reaper (agents.reaper), this
    can only guess from a run's age, COMBO_REAPER_TIMEOUT_SECONDS by default:
    a live run that finishes after the mark stores its outcome over it and
    sends that result in a new cycle, which stops this one's retries.
    Returns how many were (or, with dry_run, would be) marked.
    """
    timeout = older_than_seconds if older_than_seconds is not None else settings.COMBO_REAPER_TIMEOUT_SECONDS
    stale = WebhookDelivery.objects.stale_running(timezone.now() - timedelta(seconds=timeout))
    if dry_run:
        return stale.count()
    marked = 0
    for delivery_id in list(stale.values_list("id", flat=True)):
        with transaction.atomic():
            # Still running: a run that finished meanwhile, or another reaper's mark, is left alone.
            if not WebhookDelivery.objects.filter(id=delivery_id, status=WebhookDelivery.Status.RUNNING).update(
                status=WebhookDelivery.Status.FAILED,
                error_code=ErrorCode.SHUTTING_DOWN.code,
                error_message=INTERRUPTED_RUN_MESSAGE,
                finished_at=timezone.now(),
            ):
                continue
            marked += 1
            delivery = WebhookDelivery.objects.select_related("webhook").get(id=delivery_id)
            if delivery.webhook.callback_url:
                delivery_callback_start(delivery=delivery)
        logger.warning("webhook delivery %s: its run was left unfinished; marked failed", delivery_id)
    return marked


def _send_queued(delivery_id, generation: int, started_after) -> bool:
    """Whether the task queue still holds a try of this send cycle: waiting for a worker, a retry deferred
    to its time, or one a worker took up after `started_after` (a long-overdue try a worker is sending now)."""
    from django.db.models import Q
    from django_tasks import TaskResultStatus
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    task = tasks.send_webhook_result
    if not isinstance(task.get_backend(), DatabaseBackend):
        return False  # no queue: a try runs as it is enqueued
    return DBTaskResult.objects.filter(
        Q(status=TaskResultStatus.READY) | Q(status=TaskResultStatus.RUNNING, started_at__gte=started_after),
        task_path=task.module_path,
        args_kwargs__args__0=str(delivery_id),
        args_kwargs__args__1=generation,
    ).exists()


def _resent_as_redelivery(delivery_id, lost_try: int) -> bool:
    """Whether the cycle whose try `lost_try` was lost was started by a redeliver (DeliveryAttempt.redelivery)."""
    latest = DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("-number").first()
    if lost_try:
        # Its earlier tries are recorded, the latest being the retry that scheduled the lost one.
        return bool(latest and latest.redelivery)
    # Its first try was lost: a cycle after an earlier one's attempts is a redeliver's.
    return latest is not None


def delivery_reap_callbacks(*, older_than_seconds: int | None = None, dry_run: bool = False) -> int:
    """Send again the results whose sending a task worker that died left `pending`; fail those out of tries.

    A worker killed while it sends a result (SIGKILL, OOM, `serve` after the
    grace period) records no attempt, and the task queue does not run that try
    again: the callback stayed `pending` for good. A pending callback whose
    try was due more than COMBO_REAPER_TIMEOUT_SECONDS ago and that the queue
    no longer holds gets a new cycle that goes on with the next try, at once,
    as a retry would; the lost try counts, so a result whose every try is lost
    still ends `failed` when the retries run out. A retry still scheduled is
    not due yet, and a try waiting in the queue for a worker, or taken up by
    one within the timeout (after the queue was backed up, say), is left to it.
    Each callback is taken by a conditional update on its cycle, so however
    many reapers race, one resends it; the older cycle's task, should it run
    after all, sees it was superseded.
    Returns how many were (or, with dry_run, would be) sent again or failed.
    """
    timeout = older_than_seconds if older_than_seconds is not None else settings.COMBO_REAPER_TIMEOUT_SECONDS
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = [
        (delivery_id, generation, lost_try)
        for delivery_id, generation, lost_try in WebhookDelivery.objects.stale_callbacks(cutoff).values_list(
            "id", "callback_generation", "callback_try"
        )
        if not _send_queued(delivery_id, generation, cutoff)
    ]
    if dry_run:
        return len(stale)
    tries = len(settings.COMBO_WEBHOOK_RETRY_DELAYS) + 1
    reaped = 0
    for delivery_id, generation, lost_try in stale:
        next_try = lost_try + 1
        with transaction.atomic():
            # Still this cycle's lost try: a try that finished meanwhile, or another reaper's, is left alone.
            claim = WebhookDelivery.objects.filter(
                id=delivery_id,
                callback_status=WebhookDelivery.CallbackStatus.PENDING,
                callback_generation=generation,
                callback_try=lost_try,
                callback_due_at__lt=cutoff,
            )
            if next_try >= tries:
                if not claim.update(callback_status=WebhookDelivery.CallbackStatus.FAILED, callback_due_at=None):
                    continue
                outcome = "no retry was left; callback failed"
            else:
                if not claim.update(
                    callback_generation=generation + 1, callback_try=next_try, callback_due_at=timezone.now()
                ):
                    continue
                redelivery = _resent_as_redelivery(delivery_id, lost_try)
                _enqueue(tasks.send_webhook_result, str(delivery_id), generation + 1, next_try, redelivery)
                outcome = "sending it again"
        reaped += 1
        logger.warning("webhook delivery %s: the callback's try %s was left unfinished; %s", delivery_id, next_try, outcome)
    return reaped


# --- Sending the result -----------------------------------------------------


def _enqueue(task, *args, delay: float = 0.0):
    """Enqueue now, or after `delay` seconds when the backend can defer (the database one can;
    the immediate backend used in development cannot, so there a retry runs at once)."""
    if delay > 0 and task.get_backend().supports_defer:
        task = task.using(run_after=timezone.now() + timedelta(seconds=delay))
    return task.enqueue(*args)


@transaction.atomic
def delivery_callback_start(*, delivery: WebhookDelivery, redelivery: bool = False) -> WebhookDelivery:
    """Begin a send cycle: the first attempt now, retries as scheduled. A newer cycle stops an older one."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        callback_status=WebhookDelivery.CallbackStatus.PENDING,
        callback_generation=F("callback_generation") + 1,
        callback_try=0,
        callback_due_at=timezone.now(),
        delivered_at=None,
    )
    delivery.refresh_from_db()
    _enqueue(tasks.send_webhook_result, str(delivery.id), delivery.callback_generation, 0, redelivery)
    return delivery


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    if delivery.status not in (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED):
        raise ComboError(
            ErrorCode.CONFLICT, f"Only a finished delivery can be redelivered; this one is {delivery.status}."
        )
    if not delivery.webhook.callback_url:
        raise ComboError(ErrorCode.CONFLICT, "This webhook has no callback URL to deliver to.")
    return delivery_callback_start(delivery=delivery, redelivery=True)


def result_body(delivery: WebhookDelivery) -> bytes:
    """The signed JSON sent to the callback URL (docs/webhooks.md, "The delivery body")."""
    # The agent that answered: the session's (the one the event was accepted for), even if the
    # webhook was re-pointed since; the webhook's only when the session is gone.
    agent_id = delivery.session.agent_id if delivery.session_id else delivery.webhook.agent_id
    data = {
        "delivery_id": str(delivery.id),
        "event": delivery.event_type,
        "created_at": delivery.created_at.isoformat().replace("+00:00", "Z"),
        "webhook_id": str(delivery.webhook_id),
        "agent_id": str(agent_id),
        "session_id": str(delivery.session_id) if delivery.session_id else None,
        "message_id": str(delivery.message_id) if delivery.message_id else None,
        "question": delivery.question,
        "answer": delivery.answer,
        "reference": delivery.references,
        "error": {"code": delivery.error_code, "message": delivery.error_message} if delivery.error_code else None,
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _retry_delay(try_index: int, retry_after: float | None) -> float | None:
    """Seconds before the next try after try number `try_index` (0-based) failed, or None when none is left."""
    delays = settings.COMBO_WEBHOOK_RETRY_DELAYS
    if try_index >= len(delays):
        return None
    jitter = settings.COMBO_WEBHOOK_RETRY_JITTER
    delay = delays[try_index] * random.uniform(1 - jitter, 1 + jitter)
    if retry_after:
        delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
    return delay


def delivery_send_attempt(*, delivery_id: str, generation: int, try_index: int, redelivery: bool = False) -> str:
    """One attempt of a send cycle: POST the signed result, record it, schedule the next try or finish."""
    delivery = WebhookDelivery.objects.select_related("webhook", "session").filter(id=delivery_id).first()
    if delivery is None:
        return "gone"
    if delivery.callback_generation != generation or delivery.callback_status != WebhookDelivery.CallbackStatus.PENDING:
        return "superseded"
    webhook = delivery.webhook
    url = webhook.callback_url
    attempt = DeliveryAttempt(delivery=delivery, redelivery=redelivery, attempted_at=timezone.now(), url=url)
    retry_after = None
    try:
        if not url:
            raise DeliveryFailed("The webhook no longer has a callback URL.", permanent=True)
        body = result_body(delivery)
        try:
            secret = vault.decrypt(webhook.secret_encrypted)
        except vault.SecretUnreadable:
            raise DeliveryFailed("The webhook's secret cannot be read on the server; rotate it.", permanent=True) from None
        headers = {
            "Content-Type": "application/json",
            "X-Combo-Signature": signing.sign(secret, body),
            "X-Combo-Delivery": str(delivery.id),
            "X-Combo-Event": delivery.event_type or "",
        }
        result = CallbackTransport(timeout=settings.COMBO_WEBHOOK_DELIVERY_TIMEOUT).post(url, body, headers)
    except DeliveryFailed as exc:
        attempt.error = exc.message[:500]
        attempt.status_code = exc.status_code
        attempt.latency_ms = exc.latency_ms
        attempt.response_excerpt = exc.response_excerpt[:500]
        attempt.address = exc.address
        retry_after = exc.retry_after
        delay = None if exc.permanent else _retry_delay(try_index, retry_after)
        if delay is None:
            attempt.outcome = DeliveryAttempt.Outcome.FAILED
        else:
            attempt.outcome = DeliveryAttempt.Outcome.RETRY
            attempt.next_retry_at = timezone.now() + timedelta(seconds=delay)
    else:
        delay = None
        attempt.outcome = DeliveryAttempt.Outcome.DELIVERED
        attempt.status_code = result.status_code
        attempt.latency_ms = result.latency_ms
        attempt.response_excerpt = result.response_excerpt[:500]
        attempt.address = result.address

    with transaction.atomic():
        # Lock the delivery so attempt numbers and the cycle check cannot race a redeliver.
        current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        superseded = current.callback_generation != generation
        if superseded and attempt.outcome == DeliveryAttempt.Outcome.RETRY:
            # A redeliver started a newer cycle while this request was in flight: it owns the retries.
            attempt.outcome, attempt.next_retry_at = DeliveryAttempt.Outcome.FAILED, None
        attempt.number = (current.attempts.aggregate(n=Max("number"))["n"] or 0) + 1
        attempt.save()
        if superseded:
            return "superseded"
        if attempt.outcome == DeliveryAttempt.Outcome.DELIVERED:
            current.callback_status = WebhookDelivery.CallbackStatus.DELIVERED
            current.delivered_at = attempt.attempted_at
            current.callback_due_at = None
        elif attempt.outcome == DeliveryAttempt.Outcome.FAILED:
            current.callback_status = WebhookDelivery.CallbackStatus.FAILED
            current.callback_due_at = None
        else:
            # Still pending: the reaper takes it for lost only once its retry is long overdue.
            current.callback_try, current.callback_due_at = try_index + 1, attempt.next_retry_at
        current.save(update_fields=["callback_status", "delivered_at", "callback_try", "callback_due_at"])
        if attempt.outcome == DeliveryAttempt.Outcome.RETRY:
            _enqueue(tasks.send_webhook_result, str(delivery.id), generation, try_index + 1, redelivery, delay=delay)
    host = urlsplit(url).hostname if url else "-"
    logger.info(
        "webhook delivery %s: attempt %s to %s: %s %s",
        delivery.id, attempt.number, host, attempt.outcome, attempt.status_code or attempt.error,
    )
    return attempt.outcome
