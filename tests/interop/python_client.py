#!/usr/bin/env python3
"""A non-Rust client of reach: Python grpcio with stubs generated from proto/.

    python3 tests/interop/python_client.py HOST:PORT

Generates the stubs with grpcio-tools into a temporary directory, then
records events, asks GetBestChannel and GetReachability, checks that a bad
request is INVALID_ARGUMENT naming the field, and that the health and
reflection services answer. Prints one JSON line of what it saw; exits
non-zero on any mismatch. tests/interop.rs runs it against a real server.
"""

import json
import pathlib
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc
import grpc_tools

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"


def generate(out):
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "reachability" / "v1").glob("*.proto"))
    code = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *files])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, str(out))


def main():
    target = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        from reachability.v1 import events_pb2, reachability_service_pb2 as api
        from reachability.v1 import reachability_service_pb2_grpc as api_grpc

        channel = grpc.insecure_channel(target)
        stub = api_grpc.ReachabilityServiceStub(channel)
        seen = {}

        def event(event_id, channel_value, status, seconds):
            e = events_pb2.ChannelEvent(event_id=event_id, contact_id="py-alice",
                                        channel=channel_value, status=status)
            e.occurred_at.FromSeconds(seconds)
            return api.RecordEventRequest(event=e)

        now = 1_795_000_000  # 2026-11-18
        first = stub.RecordEvent(event("py-1", events_pb2.CHANNEL_EMAIL, events_pb2.STATUS_DELIVERED, now))
        again = stub.RecordEvent(event("py-1", events_pb2.CHANNEL_EMAIL, events_pb2.STATUS_DELIVERED, now))
        assert not first.duplicate and again.duplicate, (first, again)
        bulk = stub.RecordEvents(iter([
            event(f"py-sms-{i}", events_pb2.CHANNEL_SMS, events_pb2.STATUS_BOUNCED_HARD, now + i)
            for i in range(3)
        ]))
        assert bulk.accepted == 3, bulk

        best = stub.GetBestChannel(api.GetBestChannelRequest(contact_id="py-alice"))
        seen["best"] = events_pb2.Channel.Name(best.channel)
        assert best.channel == events_pb2.CHANNEL_EMAIL, best
        sms = next(c for c in best.ranked if c.channel == events_pb2.CHANNEL_SMS)
        assert sms.suppressed and not sms.eligible, sms
        reach = stub.GetReachability(api.GetReachabilityRequest(contact_id="py-alice"))
        assert len(reach.channels) == 4 and 0 < reach.overall_score <= 1, reach
        seen["overall"] = round(reach.overall_score, 3)

        try:
            stub.RecordEvent(event("", events_pb2.CHANNEL_SMS, events_pb2.STATUS_DELIVERED, now))
            sys.exit("an event without event_id was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
            assert "event.event_id" in e.details(), e.details()
            seen["invalid"] = e.details()

        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING, health
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = sorted(s.name for r in replies for s in r.list_services_response.service)
        assert "reachability.v1.ReachabilityService" in services, services
        seen["services"] = services
        print(json.dumps(seen))


if __name__ == "__main__":
    main()
