#!/usr/bin/python3
"""Drive Eclipse paho-mqtt (Debian python3-paho-mqtt) for Beacon's interop tests.

The Go tests in conformance/interop start this script with /usr/bin/python3 and
read one JSON object per line from stdout:

  {"event": "started"}                   (paho imported, about to connect)
  {"event": "connected", "rc": 0}
  {"event": "subscribed", "granted": [1]}
  {"event": "message", "topic": "...", "payload": "<hex>", "qos": 1, "retain": false}
  {"event": "published", "count": 3}
  {"event": "ready"}                     (will mode: connected, waiting)
  {"event": "disconnected"}              (will mode: DISCONNECT sent on SIGINT)
  {"event": "error", "error": "..."}

Every line also carries "t", the seconds since the script started.

Modes:
  sub   subscribe to --topic at --qos, print messages, exit after --count of them
  pub   publish every --payload in order at --qos (optionally --retain), wait
        until each one is acknowledged as its QoS requires, disconnect cleanly
  will  connect with a will message (--topic, --payload, --qos), print
        {"event": "ready"} and wait: SIGKILL drops the connection without
        DISCONNECT; SIGINT makes the script send DISCONNECT, print
        {"event": "disconnected"} and exit 0

The script works with paho-mqtt 1.6 and 2.x: callbacks take *args because the
two APIs (CallbackAPIVersion) pass different argument lists, and every step is
bounded by --timeout so a stuck broker cannot hang the test.
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


START = time.monotonic()


def emit(**fields):
    """Print one event; "t" is seconds since the script started, for diagnosis."""
    fields["t"] = round(time.monotonic() - START, 3)
    print(json.dumps(fields), flush=True)


def code_value(rc):
    """Return the integer in a 1.6 int return code or a 1.6/2.x ReasonCode(s)."""
    return int(getattr(rc, "value", rc))


def make_client(args):
    protocol = mqtt.MQTTv5 if args.version == "5" else mqtt.MQTTv311
    kwargs = {"client_id": args.client_id, "protocol": protocol, "transport": args.transport}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = True
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    client = mqtt.Client(**kwargs)
    if args.transport == "websockets":
        client.ws_set_options(path=args.ws_path)
    return client


def wait(event, deadline, what):
    if not event.wait(max(0.0, deadline - time.monotonic())):
        emit(event="error", error="timed out waiting for " + what)
        sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["sub", "pub", "will"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--transport", choices=["tcp", "websockets"], default="tcp")
    p.add_argument("--ws-path", default="/mqtt")
    p.add_argument("--version", choices=["3.1.1", "5"], default="3.1.1")
    p.add_argument("--qos", type=int, choices=[0, 1, 2], default=0)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--payload", action="append", default=[])
    p.add_argument("--retain", action="store_true")
    p.add_argument("--client-id", required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()

    deadline = time.monotonic() + args.timeout
    emit(event="started")
    client = make_client(args)
    connected = threading.Event()
    subscribed = threading.Event()
    done = threading.Event()
    disconnected = threading.Event()
    state = {"received": 0}

    def on_connect(_client, _userdata, _flags, rc, *_rest):
        emit(event="connected", rc=code_value(rc))
        if code_value(rc) == 0:
            connected.set()

    def on_subscribe(_client, _userdata, _mid, granted, *_rest):
        emit(event="subscribed", granted=[code_value(g) for g in granted])
        subscribed.set()

    def on_message(_client, _userdata, msg):
        emit(event="message", topic=msg.topic, payload=msg.payload.hex(),
             qos=msg.qos, retain=bool(msg.retain))
        state["received"] += 1
        if state["received"] >= args.count:
            done.set()

    def on_disconnect(*_args):
        disconnected.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    if args.mode == "will":
        payload = args.payload[0] if args.payload else ""
        client.will_set(args.topic, payload, qos=args.qos, retain=False)

    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as exc:  # connection refused etc.
        emit(event="error", error="connect: %r" % (exc,))
        return 2
    client.loop_start()
    try:
        wait(connected, deadline, "CONNACK")
        if args.mode == "sub":
            client.subscribe(args.topic, qos=args.qos)
            wait(subscribed, deadline, "SUBACK")
            wait(done, deadline, "%d messages" % args.count)
        elif args.mode == "pub":
            for payload in args.payload:
                info = client.publish(args.topic, payload, qos=args.qos, retain=args.retain)
                while not info.is_published():
                    if time.monotonic() > deadline:
                        emit(event="error", error="timed out waiting for publish acknowledgement")
                        return 3
                    time.sleep(0.005)
            emit(event="published", count=len(args.payload))
        else:  # will: stay connected until the test kills or interrupts us
            # SIGINT raises KeyboardInterrupt here (the test sends it only after
            # "ready"). No signal handler: one that set a threading.Event could
            # deadlock on the lock the interrupted main thread already holds.
            try:
                emit(event="ready")
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                emit(event="error", error="will client was not killed before --timeout")
                return 4
            except KeyboardInterrupt:
                pass
            # Leave with a DISCONNECT (reason 0), which discards the will.
            client.disconnect()
            if not disconnected.wait(max(0.0, min(2.0, deadline - time.monotonic()))):
                emit(event="error", error="timed out sending DISCONNECT")
                return 3
            emit(event="disconnected")
            return 0
        # A clean DISCONNECT: wait for it to go out before stopping the loop.
        client.disconnect()
        disconnected.wait(max(0.0, min(2.0, deadline - time.monotonic())))
    finally:
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
