#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from tests/fixtures (run from
the repository root; the seeds are committed, named seed-*)."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "providers"
CORPUS = ROOT / "fuzz" / "corpus"
PROVIDERS = ["twilio", "twilio-voice", "plivo", "vonage", "infobip", "sinch", "smpp",
             "sendgrid", "ses", "mailgun", "postmark", "fcm", "apns"]
CONTENT = {".form": 0, ".json": 1, ".txt": 2}


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


for provider_dir in sorted(FIXTURES.iterdir()):
    for fixture in sorted(provider_dir.iterdir()):
        body = fixture.read_bytes()
        pick = bytes([PROVIDERS.index(provider_dir.name), CONTENT[fixture.suffix]])
        put("provider_body", f"{provider_dir.name}-{fixture.stem}", pick + body)
        if provider_dir.name == "smpp":
            put("smpp_receipt", fixture.stem, body)

event_json = (b'{"eventId":"e1","contactId":"alice","channel":"CHANNEL_SMS",'
              b'"status":"STATUS_DELIVERED","occurredAt":"2026-11-26T09:00:00Z","address":"+14155550100"}')
put("import_line", "jsonl", b"\x00" + event_json + b"\n" + b'{"event":' + event_json + b"}\n")
put("import_line", "csv", b"\x01event_id,contact_id,channel,status,occurred_at,carrier\n"
    b"e1,alice,sms,delivered,2026-11-26T09:00:00Z,att\ne2,bob,email,bounced_hard,2026-11-26T09:00:00Z,\n")
put("import_line", "sendgrid", b"\x02" + (FIXTURES / "sendgrid" / "events.json").read_bytes().replace(b"\n", b" ") + b"\n")
put("import_line", "twilio-csv", b"\x03MessageSid,MessageStatus,To,ErrorCode\nSM1,undelivered,+14155550100,30003\n")

timestamp = field(1, 0, varint(1_795_000_000))
event = (field(1, 2, b"e1") + field(2, 2, b"alice") + field(3, 0, varint(1)) + field(4, 0, varint(2))
         + field(5, 2, timestamp) + field(16, 2, b"+14155550100"))
put("proto_event", "record-event", field(1, 2, event))
provider = (field(1, 2, b"twilio") + field(2, 2, b"application/x-www-form-urlencoded")
            + field(3, 2, (FIXTURES / "twilio" / "delivered.form").read_bytes()))
put("proto_event", "provider-event", provider)
print("seeds written to", CORPUS)
