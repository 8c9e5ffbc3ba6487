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
import { createSocket } from 'node:dgram';
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
  default:
    process.stderr.write(`traffic.ts: unknown mode ${mode}\n`);
    process.exitCode = 2;
}
