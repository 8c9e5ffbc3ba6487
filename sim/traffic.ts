// Traffic generators for the simulated node, run inside a pod namespace by
// SimNode.traffic()/spawnTraffic(). Each prints one JSON line of what it did
// (application bytes and datagrams), the "what was sent" ground truth.
//
//   tcp-sink PORT                    accept one connection, count bytes, exit
//   tcp-send HOST PORT BYTES [RATE]  send BYTES on one connection (at most RATE
//                                    bytes a second if given), close
//   udp-sink PORT COUNT              receive COUNT datagrams (or 10 s), exit
//   udp-send HOST PORT COUNT SIZE    send COUNT datagrams of SIZE bytes
//   udp-flood HOST PORT SIZE [BURST] send BURST (20) datagrams per ms until killed
//   udp-send-asap HOST PORT COUNT SIZE  prints "ready", then tries to send
//                                    the first datagram until the stack takes
//                                    it (the pod's address and route exist),
//                                    then sends the rest, one per ms
//   lo-tcp BYTES                     TCP over 127.0.0.1 within this namespace
//                                    (prints the sink's line and the sender's)
//   dns-server PORT COUNT SLOW_MS    answer COUNT DNS queries over UDP, then exit:
//                                    a name starting "nx." NXDOMAIN, "fail."
//                                    SERVFAIL, "slow." an A record after
//                                    SLOW_MS, "big." 20 A records (a 924-byte
//                                    message), any other an A record at once
//   dns-query HOST PORT NAME...      ask for each name in turn, each from a
//                                    socket of its own (a flow each); prints
//                                    each answer's code and the time it took
import { createSocket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const done = (result: object) => process.stdout.write(`${JSON.stringify(result)}\n`);

function sendAll(socket: Socket, bytes: number, onDone: () => void, bytesPerSecond = Infinity): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const started = performance.now();
  let left = bytes;
  const pump = () => {
    while (left > 0) {
      // Paced: no further ahead of the rate than one chunk.
      const aheadMs = ((bytes - left) / bytesPerSecond) * 1000 - (performance.now() - started);
      if (aheadMs > 0) return void setTimeout(pump, aheadMs);
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void socket.once('drain', pump);
    }
    socket.end(onDone);
  };
  pump();
}

function tcpSink(port: number, host: string, onListening: () => void): Server {
  const server = createServer((socket) => {
    let received = 0;
    socket.on('data', (d) => (received += d.length));
    socket.on('end', () => {
      socket.end();
      server.close();
      done({ mode: 'tcp-sink', received });
    });
  });
  return server.listen(port, host, onListening);
}

switch (mode) {
  case 'tcp-sink':
    tcpSink(Number(args[0]), '::', () => process.stdout.write('listening\n'));
    break;
  case 'tcp-send': {
    const [host, port, bytes, rate] = [args[0]!, Number(args[1]), Number(args[2]), Number(args[3] ?? Infinity)];
    const socket = connect(port, host, () => sendAll(socket, bytes, () => done({ mode, sent: bytes }), rate));
    socket.resume();
    break;
  }
  case 'udp-sink': {
    const [port, count] = [Number(args[0]), Number(args[1])];
    // A sink the machine's other work keeps off the CPU must not drop what it
    // is sent: the default 208 KiB buffer held 166 datagrams of 200 bytes
    // (1280 bytes of truesize each, 8 ms of udp-send), and a ring-tiers run
    // lost 632 of 6000 so. 4 MiB (the kernel doubles it, within
    // net.core.rmem_max, 4 MiB here) holds 6000.
    const socket = createSocket({ type: 'udp6', ipv6Only: false, recvBufferSize: 4 << 20 });
    let received = 0;
    const finish = () => {
      socket.close();
      done({ mode, received });
    };
    const timer = setTimeout(finish, 10_000);
    socket.on('message', () => {
      if (++received === count) {
        clearTimeout(timer);
        finish();
      }
    });
    socket.bind(port, '::', () => process.stdout.write('listening\n'));
    break;
  }
  case 'udp-send':
  case 'udp-flood': {
    const flood = mode === 'udp-flood';
    const [host, port] = [args[0]!, Number(args[1])];
    const count = flood ? Infinity : Number(args[2]);
    const payload = Buffer.alloc(Number(flood ? args[2] : args[3]), 0x62);
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const perBurst = flood && args[3] ? Number(args[3]) : 20;
    let sent = 0;
    // Small bursts with a pause so a sink keeps up and nothing is lost to full buffers.
    const burst = () => {
      for (let i = 0; i < perBurst && sent < count; i++, sent++) socket.send(payload, port, host);
      if (sent < count) setTimeout(burst, 1);
      else setTimeout(() => (socket.close(), done({ mode, sent, size: payload.length })), 50);
    };
    burst();
    break;
  }
  case 'udp-send-asap': {
    const [host, port, count] = [args[0]!, Number(args[1]), Number(args[2])];
    const payload = Buffer.alloc(Number(args[3]), 0x63);
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let sent = 0;
    let attempts = 0;
    const next = () => {
      if (sent === count) return void socket.close(() => done({ mode, sent, size: payload.length, attempts }));
      attempts++;
      socket.send(payload, port, host, (err) => {
        if (err) return void setImmediate(next); // no route yet (ENETUNREACH): try again at once
        sent++;
        setTimeout(next, 1);
      });
    };
    process.stdout.write('ready\n');
    next();
    break;
  }
  case 'lo-tcp': {
    const bytes = Number(args[0]);
    const server = tcpSink(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      const socket = connect(port, '127.0.0.1', () => sendAll(socket, bytes, () => done({ mode, sent: bytes })));
      socket.resume();
    });
    break;
  }
  case 'dns-server': {
    const [port, count, slowMs] = [Number(args[0]), Number(args[1]), Number(args[2])];
    const socket = createSocket({ type: 'udp6', ipv6Only: false });
    let answered = 0;
    socket.on('message', (message, from) => {
      const received = performance.now();
      let query: dnsPacket.Packet;
      try {
        query = dnsPacket.decode(message);
      } catch {
        return;
      }
      const question = query.questions?.[0];
      if (question === undefined) return;
      const name = question.name;
      const rcode = name.startsWith('nx.') ? 3 : name.startsWith('fail.') ? 2 : 0;
      const addresses = rcode !== 0 ? [] : name.startsWith('big.') ? Array.from({ length: 20 }, (_, i) => `198.18.53.${i + 1}`) : ['198.18.53.53'];
      const answers: dnsPacket.Answer[] = addresses.map((data) => ({ type: 'A', name, ttl: 30, data }));
      const reply = dnsPacket.encode({ type: 'response', id: query.id, flags: dnsPacket.RECURSION_DESIRED | rcode, questions: [question], answers });
      const send = () =>
        socket.send(reply, from.port, from.address, () => {
          if (++answered === count) socket.close(() => done({ mode, answered }));
        });
      // At least slowMs after the query arrived, by the clock: a timer counts
      // from the event loop's cached time, which can be behind, and fired
      // 299.999 ms after the capture saw the query (a flaky floor in dns-e2e).
      // One more millisecond: captures stamp by the real-time clock, which
      // NTP may slew by up to 500 ppm against the monotonic one measured here.
      const hold = () => {
        const left = received + slowMs + 1 - performance.now();
        if (left > 0) setTimeout(hold, Math.ceil(left));
        else send();
      };
      if (name.startsWith('slow.')) hold();
      else send();
    });
    socket.bind(port, '::', () => process.stdout.write('listening\n'));
    break;
  }
  case 'dns-query': {
    const [host, port, ...names] = [args[0]!, Number(args[1]), ...args.slice(2)];
    const answers: Array<{ name: string; rcode: number; ms: number }> = [];
    for (const [i, name] of names.entries()) {
      const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      const started = performance.now();
      const answer = await new Promise<dnsPacket.Packet>((resolve) => {
        socket.once('message', (m) => resolve(dnsPacket.decode(m)));
        socket.send(dnsPacket.encode({ type: 'query', id: 0x1000 + i, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), port, host);
      });
      // RCODE: the low 4 bits of the header flags.
      answers.push({ name, rcode: (answer.flags ?? 0) & 0x0f, ms: performance.now() - started });
      socket.close();
    }
    done({ mode, answers });
    break;
  }
  default:
    process.stderr.write(`traffic.ts: unknown mode ${mode}\n`);
    process.exitCode = 2;
}
