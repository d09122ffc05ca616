"""MQTT for pipeline-run events (alerts-and-access.md §4): a draining consumer and a publisher.

Consumer: ``drain(url, handle, client_id=...)`` connects with a **persistent session** (MQTT
v5, ``clean_start=False`` and a session expiry, under a fixed client id), subscribes QoS 1 to
``celine/pipelines/runs/+`` and hands the waiting messages to ``handle(batch)`` in batches
(a batch ends when no message came for ``idle_s``; the whole drain stops after
``max_wait_s``). A batch is acknowledged (PUBACK) only after ``handle`` returned: if it
raises, nothing of that batch is acked and the broker redelivers it at the next drain.
While the consumer is away the broker queues QoS 1 events for the session, so a Dagster
sensor tick that calls ``drain`` gets everything published since the last tick. Redelivered
messages are normal (at least once): ``handle`` must de-duplicate, e.g. with
``alerts.events.record_run_events`` (processed-events table keyed ``run_id|status``).

Publisher: ``publish(url, topic, payload, qos=1, retain=False)`` and ``publish_run_event``.
``forget_session(url, client_id)`` drops a consumer's session (and what is queued for it).

``url`` is ``MQTT_URL`` (``mqtt://[user[:password]@]host[:1883]`` or ``mqtts://…:8883``);
``None`` means MQTT is off: ``drain`` returns ``DrainResult(enabled=False, detail="MQTT is
off (MQTT_URL unset)")`` and ``publish`` returns False. An unreachable broker raises
``MqttUnavailable``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from grid_platform.alerts.events import RUN_TOPIC_FILTER, PipelineRunEvent

log = logging.getLogger(__name__)

MQTT_OFF = "MQTT is off (MQTT_URL unset)"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_mqtt_url(url: str) -> Broker:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883, got {url!r}")
    return Broker(host=parts.hostname, port=parts.port or DEFAULT_PORTS[parts.scheme], tls=parts.scheme == "mqtts",
                  username=unquote(parts.username) if parts.username else None,
                  password=unquote(parts.password) if parts.password else None)


@dataclass(frozen=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool


@dataclass(frozen=True)
class DrainResult:
    enabled: bool
    detail: str
    received: int = 0
    batches: int = 0
    session_present: bool | None = None


def _client(broker: Broker, client_id: str, *, manual_ack: bool) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                         manual_ack=manual_ack, reconnect_on_failure=False)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set()
    return client


def _connect(client: paho.Client, broker: Broker, *, clean_start: bool, session_expiry_s: int,
             timeout_s: float) -> bool:
    """Connect and wait for CONNACK; returns whether the broker still had the session."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_client, _userdata, flags, reason_code, _properties) -> None:
        outcome.update(reason=reason_code, session_present=flags.session_present)
        done.set()

    client.on_connect = on_connect
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = session_expiry_s
    try:
        client.connect(broker.host, broker.port, keepalive=30, clean_start=clean_start, properties=properties)
    except OSError as exc:
        raise MqttUnavailable(f"cannot reach MQTT broker {broker.host}:{broker.port}: {exc}") from exc
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        raise MqttUnavailable(f"no CONNACK from {broker.host}:{broker.port} within {timeout_s} s")
    if outcome["reason"].is_failure:
        client.loop_stop()
        raise MqttUnavailable(f"MQTT broker refused the connection: {outcome['reason']}")
    return bool(outcome["session_present"])


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def drain(url: str | None, handle: Callable[[list[ReceivedMessage]], None], *, client_id: str,
          topic: str = RUN_TOPIC_FILTER, session_expiry_s: int = 7 * 24 * 3600, max_wait_s: float = 10.0,
          idle_s: float = 0.5, connect_timeout_s: float = 5.0) -> DrainResult:
    """Hand every waiting message to ``handle`` (batch by batch), acking a batch after it returned."""
    if not url:
        return DrainResult(enabled=False, detail=MQTT_OFF)
    broker = parse_mqtt_url(url)
    client = _client(broker, client_id, manual_ack=True)
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, m: inbox.put(ReceivedMessage(m.topic, bytes(m.payload), m.mid, m.qos, m.dup))
    client.on_subscribe = lambda *_args: subscribed.set()
    session_present = _connect(client, broker, clean_start=False, session_expiry_s=session_expiry_s,
                               timeout_s=connect_timeout_s)
    received = batches = 0
    try:
        client.subscribe(topic, options=SubscribeOptions(qos=1))
        if not subscribed.wait(connect_timeout_s):
            raise MqttUnavailable(f"no SUBACK for {topic} within {connect_timeout_s} s")
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            batch = _collect(inbox, idle_s, deadline)
            if not batch:
                break
            handle(batch)  # raising leaves the batch unacked: redelivered next time
            for message in batch:
                client.ack(message.mid, message.qos)
            received += len(batch)
            batches += 1
    finally:
        _close(client)
    return DrainResult(enabled=True, detail=f"{received} message(s) in {batches} batch(es)", received=received,
                       batches=batches, session_present=session_present)


def forget_session(url: str, client_id: str, *, timeout_s: float = 5.0) -> None:
    """Drop the broker's session of ``client_id`` (its subscription and queued messages)."""
    broker = parse_mqtt_url(url)
    client = _client(broker, client_id, manual_ack=False)
    _connect(client, broker, clean_start=True, session_expiry_s=0, timeout_s=timeout_s)
    _close(client)


def _collect(inbox: queue.Queue[ReceivedMessage], idle_s: float, deadline: float) -> list[ReceivedMessage]:
    batch: list[ReceivedMessage] = []
    while True:
        wait = min(idle_s, deadline - time.monotonic())
        if wait <= 0:
            return batch
        try:
            batch.append(inbox.get(timeout=wait))
        except queue.Empty:
            return batch


def publish(url: str | None, topic: str, payload: Mapping[str, Any] | bytes | str, *, qos: int = 1,
            retain: bool = False, timeout_s: float = 5.0) -> bool:
    """Publish one message and wait for the broker's acknowledgement (QoS 1: PUBACK).

    Returns False without doing anything when MQTT is off (``url`` empty).
    """
    if not url:
        log.info("%s: not publishing to %s", MQTT_OFF, topic)
        return False
    broker = parse_mqtt_url(url)
    body = payload if isinstance(payload, bytes | str) else json.dumps(payload, separators=(",", ":"))
    client = _client(broker, f"grid-platform-pub-{uuid.uuid4().hex[:12]}", manual_ack=False)
    _connect(client, broker, clean_start=True, session_expiry_s=0, timeout_s=timeout_s)
    try:
        info = client.publish(topic, body, qos=qos, retain=retain)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise MqttUnavailable(f"publish to {topic} not acknowledged within {timeout_s} s (rc {info.rc})")
    finally:
        _close(client)
    return True


def publish_run_event(url: str | None, event: PipelineRunEvent, **options: Any) -> bool:
    """Publish a pipeline-run event on ``celine/pipelines/runs/{namespace}`` (QoS 1, not retained)."""
    return publish(url, event.topic, event.as_dict(), **options)
