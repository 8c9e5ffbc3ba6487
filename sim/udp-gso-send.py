#!/usr/bin/env python3
# A UDP sender that uses UDP GSO (UDP_SEGMENT): each sendmsg hands the kernel
# up to 50 datagrams as one buffer, which the stack or the NIC cuts up. For
# the simulated node's wire-exact tests (Node's dgram has no UDP_SEGMENT).
#   udp-gso-send.py HOST PORT COUNT SIZE
# Prints {"sent": datagrams, "sends": sendmsg calls} as one JSON line.
import json
import socket
import sys
import time

UDP_SEGMENT = 103  # linux/udp.h
PER_SEND = 50

host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, size)
sent = sends = 0
while sent < count:
    n = min(PER_SEND, count - sent)
    s.sendto(b"c" * (n * size), (host, port))
    sent += n
    sends += 1
    # Paced so a receiver without UDP GRO keeps up with the datagrams.
    time.sleep(0.002)
print(json.dumps({"sent": sent, "sends": sends}))
