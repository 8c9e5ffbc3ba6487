// Long-running traffic for `podflow demo`, run inside a pod namespace of the
// simulated node. Unlike the one-shot generators the tests use, these loop
// until killed, so the demo's flows keep coming.
//
//   serve PORT                       TCP and UDP servers on PORT: TCP reads and
//                                    answers each request with as many bytes
//                                    as asked; UDP echoes
//   tcp-client HOST PORT BYTES MS    every MS: connect, ask for BYTES, close
//   udp-client HOST PORT SIZE MS     every MS: send a SIZE-byte datagram
//   loopback PORT BYTES MS           serve on 127.0.0.1:PORT and, every MS, a
//                                    local client asks for BYTES (east-west
//                                    traffic between two containers of a pod)
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';

const [mode, ...args] = process.argv.slice(2);

function serveTcp(port: number, host: string): void {
  createServer((socket) => {
    socket.once('data', (request) => {
      const wanted = Math.min(Number.parseInt(request.toString('latin1'), 10) || 0, 16 << 20);
      socket.end(Buffer.alloc(wanted, 0x70));
    });
    socket.on('error', () => socket.destroy());
  }).listen(port, host);
}

function serveUdp(port: number): void {
  const socket = createSocket({ type: 'udp6', ipv6Only: false });
  socket.on('message', (message, from) => socket.send(message, from.port, from.address));
  socket.bind(port, '::');
}

function tcpRequest(host: string, port: number, bytes: number): void {
  const socket = connect(port, host, () => socket.write(String(bytes)));
  socket.resume();
  socket.on('error', () => socket.destroy());
}

switch (mode) {
  case 'serve':
    serveTcp(Number(args[0]), '::');
    serveUdp(Number(args[0]));
    break;
  case 'tcp-client': {
    const [host, port, bytes, every] = [args[0]!, Number(args[1]), Number(args[2]), Number(args[3])];
    setInterval(() => tcpRequest(host, port, bytes), every);
    break;
  }
  case 'udp-client': {
    const [host, port, size, every] = [args[0]!, Number(args[1]), Number(args[2]), Number(args[3])];
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.bind(0, () => setInterval(() => socket.send(Buffer.alloc(size, 0x75), port, host), every));
    socket.on('message', () => {});
    break;
  }
  case 'loopback': {
    const [port, bytes, every] = [Number(args[0]), Number(args[1]), Number(args[2])];
    serveTcp(port, '127.0.0.1');
    setInterval(() => tcpRequest('127.0.0.1', port, bytes), every);
    break;
  }
  default:
    process.stderr.write(`demo-traffic.ts: unknown mode ${mode}\n`);
    process.exitCode = 2;
}
