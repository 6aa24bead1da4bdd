#!/usr/bin/env python3
"""Builds the seed corpora in fuzz/corpus/<target>/ from the RFC 4475 / RFC 5118 torture
messages (lib/sip-message/tests), the peer captures (../shared/reference/peers/captures), the
shipped configs, the XML documents of the project's own tests and a few hostile inputs.
Re-running it is harmless: files are named by content hash (16 hex digits). The files named by
40 hex digits are inputs libFuzzer found (a sample of up to 64 per target of a merge after the
runs of docs/reliability.md)."""
import glob, hashlib, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURES = os.environ.get("CAPTURES", os.path.join(ROOT, "..", "shared", "reference", "peers", "captures"))
OUT = os.path.join(ROOT, "fuzz", "corpus")

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def crlf_message(text):
    """A capture frame as it was on the wire: CRLF lines, Content-Length honest."""
    head, sep, body = text.lstrip("\n").partition("\n\n")
    body = body.rstrip("\n") + ("\n" if body.strip() else "")
    lines = [l for l in head.split("\n")]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

def xml_strings(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for m in re.finditer(r'r#+"(.*?)"#+', text, re.S):
        yield m.group(1)

# SIP: RFC 4475 and RFC 5118 messages (already byte-exact files in the parser's tests).
for f in (sorted(glob.glob(os.path.join(ROOT, "lib/sip-message/tests/rfc4475/*.dat"))) +
          sorted(glob.glob(os.path.join(ROOT, "lib/sip-message/tests/rfc5118/*.dat")))):
    put("sip_message", open(f, "rb").read())

# SIP and XML bodies from the captures.
for f in sorted(glob.glob(os.path.join(CAPTURES, "*.txt"))):
    for frame in open(f, encoding="utf-8", errors="replace").read().split("===== frame")[1:]:
        msg = frame.split("\n", 1)[1] if "\n" in frame else ""
        if msg.strip():
            put("sip_message", crlf_message(msg))
            body = msg.partition("\n\n")[2].strip()
            if "<presence" in body:
                put("pidf", body)
            if "<dialog-info" in body:
                put("dialog_info", body)
for f in sorted(glob.glob(os.path.join(CAPTURES, "*.log"))):
    text = open(f, encoding="utf-8", errors="replace").read()
    if "xep0114" in f:
        put("xmpp", "".join(l.split(" ", 2)[2] for l in text.splitlines() if l.startswith("S>C")))
        put("xmpp", "".join(l.split(" ", 2)[2] for l in text.splitlines() if l.startswith("C>S")))
        continue
    for part in re.split(r"\n-{20,}[^\n]*\n", text):
        m = re.search(r"bytes\)?\s*:\s*\n\n(.*)", part, re.S)
        if m and m.group(1).strip():
            put("sip_message", crlf_message(m.group(1)))

# XML documents from the project's tests and sources.
for f in sorted(glob.glob(os.path.join(ROOT, "lib/*/src/*.rs")) + glob.glob(os.path.join(ROOT, "plugins/*/src/*.rs")) +
                glob.glob(os.path.join(ROOT, "tests/tests/*.rs"))):
    for s in xml_strings(f):
        if "<presence" in s and "pidf" in s:
            put("pidf", s)
        if "<dialog-info" in s:
            put("dialog_info", s)
        if "ruleset" in s:
            put("pres_rules", s)
        if "<stream:stream" in s or "<presence" in s and "jabber" in s:
            put("xmpp", s)

# Configs.
for f in sorted(glob.glob(os.path.join(ROOT, "configs/*.toml"))):
    put("config", open(f, "rb").read())

# JSON-RPC requests as kamctl and HTTP clients send them.
for s in [
    '{"jsonrpc": "2.0", "method": "core.version", "id": 1}',
    '{"jsonrpc": "2.0", "method": "pua.publish", "params": ["sip:alice@example.com", 3600, "presence", "application/pidf+xml", ".", ".", ".", "<presence/>"], "reply_name": "kamailio_receiver_1", "id": 2}\n',
    '[{"jsonrpc": "2.0", "method": "system.listMethods", "id": 1}, {"method": "ul.dump", "params": {"a": 1}}, 7]',
    '{"jsonrpc": "2.0", "method": "pua.publish", "params": ["X-A: 1\r\n", "<x a="1"/>"], "reply_name": "kamailio_receiver_42", "id": 42}',
    '{"jsonrpc": "1.0", "method": 5}{"method": "a"} garbage\n[1, [2, {"x": "\\u00e9"}]]',
]:
    put("jsonrpc", s)
print("corpus:", {t: len(os.listdir(os.path.join(OUT, t))) for t in sorted(os.listdir(OUT))})

# Hostile inputs (tests/tests/hostile.rs sends the same to the real binary).
laughs = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
    '<!ENTITY lol%d "%s">' % (n, ("&lol%s;" % ("" if n == 2 else n - 1)) * 10) for n in range(2, 10)
) + ']><presence xmlns="urn:ietf:params:xml:ns:pidf">&lol9;</presence>'
for t in ("pidf", "dialog_info", "pres_rules", "xmpp"):
    put(t, laughs)
    put(t, "<presence xmlns='urn:ietf:params:xml:ns:pidf'>" + "<a>" * 5000 + "</a>" * 5000 + "</presence>")
head = ("PUBLISH sip:alice@127.0.0.1 SIP/2.0\r\n" + "".join("v: SIP/2.0/UDP h%d;branch=z9hG4bK%d\r\n" % (i, i) for i in range(1500)) +
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 PUBLISH\r\nContent-Length: 0\r\n\r\n")
put("sip_message", head)
put("sip_message", b"OPTIONS sip:al\xff\xfeice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:te\xc3\x28st@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n")
put("jsonrpc", "[" * 5000 + "]" * 5000)
put("config", "a = " + "[" * 5000 + "]" * 5000)

# Watcher-info inputs: resource, then (watcher URI, id) pairs, NUL-separated.
put("winfo", "sip:alice@example.com\0sip:bob@example.com\0a84b4c76e66710@pc33.atlanta.com\0sip:carol@example.com")
put("winfo", "sip:a&b@example.com\0sip:\"<x>'@example.com\0id&<>\"'")
