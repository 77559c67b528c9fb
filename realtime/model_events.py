"""``publish_model()``: publish a model's saves and deletes without writing signal handlers.

::

    realtime.publish_model(
        Order,
        topic="order.{pk}",             # or a callable: lambda order: [...topics...]
        fields=["status", "updated_at"],  # or data=lambda order: {...}
        if_changed=["status"],          # updates only when the status changed
        ack=True,
    )

Call it once at start-up, e.g. in the app's ``realtime_topics.py`` beside the topic's
permission. It connects ``post_save``/``post_delete`` receivers for exactly that model class
(Django sends no signal for ``bulk_create()``, ``bulk_update()`` and ``QuerySet.update()``, so
those publish nothing), which publish ``<model_name>.created``, ``.updated`` and ``.deleted``
with :func:`realtime.publish`: inside ``transaction.atomic`` on commit, never for a rolled-back
change. Fixture loading (``raw`` saves) publishes nothing."""

from __future__ import annotations

import logging
import string
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.db.models.fields.files import FieldFile
from django.db.models.signals import post_delete, post_init, post_save

import realtime
from realtime.protocol import EVENT_RE
from realtime.signals import publish_failed

logger = logging.getLogger("realtime.model_events")

EVENTS = ("created", "updated", "deleted")
_DEFERRED = object()  # a tracked value that was not loaded (deferred): counts as changed
_SNAPSHOT = "_realtime_loaded"

TopicSpec = str | Callable[[Any], str | Iterable[str]]


class _AttributeFormatter(string.Formatter):
    """Formats ``"order.{pk}"`` with the instance's attributes."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return getattr(args[0], str(key))


_formatter = _AttributeFormatter()


class ModelPublisher:
    """The receivers that :func:`publish_model` connected for one model;
    :meth:`disconnect` removes them."""

    def __init__(
        self,
        model: type[models.Model],
        topic: TopicSpec,
        fields: Sequence[str] | Literal["__all__"] | None,
        data: Callable[[Any], Any] | None,
        events: Iterable[str],
        event_prefix: str | None,
        if_changed: Sequence[str] | None,
        ack: bool,
        durable: bool | None = None,
    ) -> None:
        self.model = model
        name = f"realtime.publish_model({model._meta.label})"
        if (fields is None) == (data is None):
            raise ImproperlyConfigured(
                f"{name}: pass either fields=[...] (the model fields to publish, or "
                "'__all__') or data=callable(instance), not both and not neither."
            )
        self.fields = self._fields(name, fields) if fields is not None else {}
        self.data: Callable[[Any], Any] = data if data is not None else self._field_values
        if isinstance(topic, str):
            template = topic
            self._check_template(name, template)
            topic = lambda instance: _formatter.format(template, instance)  # noqa: E731
        self.topic = topic
        self.events = set(events)
        if not self.events or not self.events <= set(EVENTS):
            raise ImproperlyConfigured(f"{name}: events must be some of {EVENTS}.")
        self.prefix = event_prefix if event_prefix is not None else model._meta.model_name
        for kind in self.events:
            if not EVENT_RE.fullmatch(f"{self.prefix}.{kind}"):
                raise ImproperlyConfigured(
                    f"{name}: {self.prefix}.{kind!r} is not a valid event name; pass "
                    "event_prefix= (letters, digits, '_', '.', '-', starting with a letter)."
                )
        # attname -> name of the fields whose change an update needs (None: any update)
        self.tracked = (
            {f.attname: f.name for f in self._fields(name, if_changed).values()}
            if if_changed is not None
            else None
        )
        self.ack = ack
        self.durable = durable
        self.uid = f"realtime.publish_model:{model._meta.label}"

    def _check_template(self, name: str, template: str) -> None:
        try:
            parts = [field for _, field, _, _ in string.Formatter().parse(template) if field]
        except ValueError as error:
            raise ImproperlyConfigured(f"{name}: topic {template!r}: {error}.") from None
        for field in parts:
            attribute = field.split(".", 1)[0].split("[", 1)[0]
            if not attribute or not hasattr(self.model, attribute):
                raise ImproperlyConfigured(
                    f"{name}: the topic {template!r} names {{{field}}}, but "
                    f"{self.model.__name__} has no attribute {attribute!r}."
                )

    def _fields(
        self, name: str, names: Sequence[str] | Literal["__all__"]
    ) -> dict[str, models.Field[Any, Any]]:
        if names == "__all__":
            return {f.name: f for f in self.model._meta.concrete_fields}
        if isinstance(names, str):
            raise ImproperlyConfigured(f"{name}: fields must be a list of names or '__all__'.")
        found: dict[str, models.Field[Any, Any]] = {}
        for field_name in names:
            try:
                field = self.model._meta.get_field(field_name)
            except FieldDoesNotExist:
                raise ImproperlyConfigured(
                    f"{name}: {self.model.__name__} has no field {field_name!r}; for computed "
                    "values pass data=callable(instance) instead of fields."
                ) from None
            if not isinstance(field, models.Field) or field.many_to_many or not field.concrete:
                raise ImproperlyConfigured(
                    f"{name}: {field_name!r} is not a column of {self.model.__name__} "
                    "(many-to-many fields are saved after post_save: publish them from "
                    "m2m_changed, or with data=callable)."
                )
            found[field_name] = field
        return found

    # -- what is published -----------------------------------------------------------------

    def _field_values(self, instance: models.Model) -> dict[str, Any]:
        """``{"pk": …, <field>: <value>, …}``: a foreign key as its primary key, a file as
        its name."""
        values: dict[str, Any] = {"pk": instance.pk}
        for name, field in self.fields.items():
            value = field.value_from_object(instance)
            values[name] = (value.name or None) if isinstance(value, FieldFile) else value
        return values

    def topics(self, instance: models.Model) -> list[str]:
        found = self.topic(instance)
        return [found] if isinstance(found, str) else list(found)

    def publish(self, instance: models.Model, kind: str, using: str | None) -> None:
        event = f"{self.prefix}.{kind}"
        data = self.data(instance)
        for topic in self.topics(instance):
            message_id = uuid.uuid4().hex
            try:
                realtime.publish(
                    topic,
                    event,
                    data,
                    ack=self.ack,
                    message_id=message_id,
                    using=using,
                    durable=self.durable,
                )
            except realtime.PublishError as error:
                # Outside a transaction the row is saved already: the save must not fail
                # because of us. Reported as a publish after a commit is.
                logger.warning(
                    "%s %s of %s pk=%s was saved but not published on %r: %s",
                    event,
                    message_id,
                    self.model._meta.label,
                    instance.pk,
                    topic,
                    error,
                )
                publish_failed.send(
                    sender=realtime.publish,
                    topic=topic,
                    event=event,
                    message_id=message_id,
                    error=error,
                )

    # -- change tracking (if_changed) ------------------------------------------------------

    def _remember(self, instance: models.Model, attnames: Iterable[str]) -> None:
        # a new dict each time: copy.copy() of an instance shares its __dict__'s values
        values = instance.__dict__
        values[_SNAPSHOT] = {
            **values.get(_SNAPSHOT, {}),
            **{attname: values.get(attname, _DEFERRED) for attname in attnames},
        }

    def _changed(
        self, instance: models.Model, tracked: dict[str, str], update_fields: frozenset[str] | None
    ) -> bool:
        snapshot = instance.__dict__.get(_SNAPSHOT, {})
        saved = [
            attname
            for attname, name in tracked.items()
            if update_fields is None or attname in update_fields or name in update_fields
        ]
        changed = any(
            snapshot.get(a, _DEFERRED) is _DEFERRED
            or snapshot[a] != instance.__dict__.get(a, _DEFERRED)
            for a in saved
        )
        self._remember(instance, saved)
        return changed

    # -- receivers -------------------------------------------------------------------------

    def _on_init(self, sender: Any, instance: models.Model, **kwargs: Any) -> None:
        self._remember(instance, self.tracked or {})

    def _on_save(
        self,
        sender: Any,
        instance: models.Model,
        created: bool,
        raw: bool = False,
        using: str | None = None,
        update_fields: frozenset[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if raw:
            return
        if created:
            if self.tracked is not None:
                self._remember(instance, self.tracked)
            if "created" in self.events:
                self.publish(instance, "created", using)
            return
        if self.tracked is not None and not self._changed(instance, self.tracked, update_fields):
            return
        if "updated" in self.events:
            self.publish(instance, "updated", using)

    def _on_delete(
        self, sender: Any, instance: models.Model, using: str | None = None, **kwargs: Any
    ) -> None:
        if "deleted" in self.events:
            self.publish(instance, "deleted", using)

    def connect(self) -> None:
        if self.tracked is not None:
            post_init.connect(self._on_init, sender=self.model, weak=False, dispatch_uid=self.uid)
        post_save.connect(self._on_save, sender=self.model, weak=False, dispatch_uid=self.uid)
        post_delete.connect(self._on_delete, sender=self.model, weak=False, dispatch_uid=self.uid)

    def disconnect(self) -> None:
        """Stop publishing this model's changes."""
        for signal in (post_init, post_save, post_delete):
            signal.disconnect(sender=self.model, dispatch_uid=self.uid)
        if _publishers.get(self.model) is self:
            del _publishers[self.model]


_publishers: dict[type[models.Model], ModelPublisher] = {}


def publish_model(
    model: type[models.Model],
    *,
    topic: TopicSpec,
    fields: Sequence[str] | Literal["__all__"] | None = None,
    data: Callable[[Any], Any] | None = None,
    events: Iterable[str] = EVENTS,
    event_prefix: str | None = None,
    if_changed: Sequence[str] | None = None,
    ack: bool = False,
    durable: bool | None = None,
) -> ModelPublisher:
    """Publish ``model``'s saves and deletes: ``<prefix>.created`` after a save that inserted
    a row, ``<prefix>.updated`` after one that updated it, ``<prefix>.deleted`` after a delete
    (``events`` selects which; ``prefix`` is ``event_prefix`` or the model's ``model_name``).

    ``topic``: a string formatted with the instance's attributes (``"order.{pk}"``,
    ``"customer:{customer_id}"``) or a callable taking the instance and returning a topic or a
    list of topics (each gets the message). ``fields``: the model fields whose values form the
    data, as ``{"pk": …, "status": …}`` (foreign keys as their primary key, files as their
    name, encoded with DjangoJSONEncoder), or ``"__all__"`` (every column: mind what you
    expose); or instead ``data``, a callable taking the instance and returning the data.
    ``if_changed``: field names; an update is published only when one of them differs from
    its value when the instance was loaded or last saved (and was saved: ``update_fields``).
    ``ack`` and ``durable``: as for :func:`realtime.publish`.

    Each message goes through :func:`realtime.publish`: sent when the transaction commits
    (never on rollback), captured by ``capture_published()``. A publish failure never raises
    into ``save()`` or ``delete()``: it is logged and sent as the ``publish_failed`` signal.
    Calling it again for the same model replaces the former registration. Raises
    ``ImproperlyConfigured`` for unknown fields or arguments."""
    publisher = ModelPublisher(
        model, topic, fields, data, events, event_prefix, if_changed, ack, durable
    )
    former = _publishers.get(model)
    if former is not None:
        former.disconnect()
    publisher.connect()
    _publishers[model] = publisher
    return publisher
