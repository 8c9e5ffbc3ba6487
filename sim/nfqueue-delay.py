#!/usr/bin/env python3
# Holds every packet netfilter queues to it (iptables -j NFQUEUE) for a fixed
# time, then lets it go: the delay half of `tc netem`, for kernels built
# without sch_netem (this machine's: CONFIG_NET_SCH_NETEM is not set). Loss is
# iptables' `-m statistic --mode random`. Speaks nfnetlink_queue over a raw
# netlink socket (no library on the machine does), metadata only.
#   nfqueue-delay.py QUEUE DELAY_MS
# Prints "bound" once it holds the queue; on SIGTERM or SIGINT one JSON line:
# packets held, and how late the latest release was past its time (µs).
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
SO_RCVBUFFORCE = 33

queue, delay = int(sys.argv[1]), int(sys.argv[2]) / 1000

# Released on time even when the machine is busy: a real-time scheduling class
# if this process may have one.
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
except OSError:
    pass


def attribute(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def message(kind, payload, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + payload
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, NLM_F_REQUEST, seq, 0) + body


sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
sock.bind((0, 0))
sock.send(message(NFQNL_MSG_CONFIG, attribute(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))))
sock.send(message(NFQNL_MSG_CONFIG, attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                  + attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536))))
print("bound", flush=True)

held = deque()  # (release time, packet id), in arrival order: one delay for all keeps it sorted
count = 0
latest_late = 0.0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

def release(packet_id):
    # Every packet up to this id, in one message: they are held in id order, so all are due.
    sock.send(message(NFQNL_MSG_VERDICT_BATCH, attribute(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))))


while running:
    now = time.monotonic()
    last = None
    while held and held[0][0] <= now:
        due, last = held.popleft()
        latest_late = max(latest_late, now - due)
    if last is not None:
        release(last)
    timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
    except InterruptedError:
        continue
    if not readable:
        continue
    data = sock.recv(1 << 20)
    arrived = time.monotonic()
    at = 0
    while at + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, at)
        if kind == NLMSG_ERROR:
            error = struct.unpack_from("=i", data, at + 16)[0]
            if error != 0:
                sys.exit(f"nfnetlink error {error}")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = at + 20
            while a + 4 <= at + length:
                size, attr = struct.unpack_from("=HH", data, a)
                if attr & 0x7FFF == NFQA_PACKET_HDR:
                    held.append((arrived + delay, struct.unpack_from("!I", data, a + 4)[0]))
                    count += 1
                    break
                a += (size + 3) & ~3
        at += (length + 3) & ~3

# What is still held goes on now: closing the socket would drop it.
if held:
    release(held[-1][1])
print(json.dumps({"packets": count, "latestLateMicros": round(latest_late * 1e6)}), flush=True)
