/* The far end of the IPFIX export benchmark: drains what podflow sends to
 * 127.0.0.1 and counts it, doing as little as possible so that it is never
 * the bottleneck. Compiled at bench time by bench/ipfix/export.bench.ts:
 *   cc -O2 -o DIR/ipfix-receiver bench/ipfix/receiver.c
 * usage: ipfix-receiver udp|tcp
 * Binds 127.0.0.1 on a free port and prints "port N". Then, for every line
 * read on stdin, prints one line of counts:
 *   udp: "datagrams D bytes B bad X first_ns F last_ns L"
 *   tcp: "bytes B messages M bad X eof E first_ns F last_ns L"
 * where "bad" counts datagrams (udp) or messages (tcp) whose IPFIX header is
 * not version 10 with a length matching what arrived, and first/last are the
 * CLOCK_MONOTONIC times (the clock of Node's process.hrtime) of the first and
 * last byte received. Exits when stdin closes.
 * udp: recvmmsg(), 64 datagrams a call, SO_RCVBUFFORCE 64 MiB (root) or
 * SO_RCVBUF. tcp: one connection, read() in 1 MiB chunks, IPFIX message
 * headers followed across chunk boundaries. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM_MAX 65536
#define CHUNK (1 << 20)

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static uint64_t datagrams, bytes, messages, bad, first_ns, last_ns;
static int eof;

/* TCP: position inside the IPFIX message stream. */
static uint8_t head[4];
static unsigned head_have;
static uint32_t msg_left; /* bytes of the current message after its first 4 */

static void stream(const uint8_t *p, size_t n) {
  while (n > 0) {
    if (msg_left > 0) {
      size_t k = n < msg_left ? n : msg_left;
      msg_left -= k;
      p += k;
      n -= k;
      continue;
    }
    head[head_have++] = *p++;
    n--;
    if (head_have < 4) continue;
    head_have = 0;
    unsigned version = (head[0] << 8) | head[1];
    unsigned length = (head[2] << 8) | head[3];
    messages++;
    if (version != 10 || length < 16) {
      bad++;
      continue; /* resynchronisation is not attempted: bad > 0 fails the bench */
    }
    msg_left = length - 4;
  }
}

static void report(int udp) {
  if (udp)
    printf("datagrams %llu bytes %llu bad %llu first_ns %llu last_ns %llu\n", (unsigned long long)datagrams,
           (unsigned long long)bytes, (unsigned long long)bad, (unsigned long long)first_ns,
           (unsigned long long)last_ns);
  else
    printf("bytes %llu messages %llu bad %llu eof %d first_ns %llu last_ns %llu\n", (unsigned long long)bytes,
           (unsigned long long)messages, (unsigned long long)bad, eof,
           (unsigned long long)first_ns, (unsigned long long)last_ns);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "udp") && strcmp(argv[1], "tcp"))) {
    fprintf(stderr, "usage: %s udp|tcp\n", argv[0]);
    return 2;
  }
  int udp = strcmp(argv[1], "udp") == 0;
  int s = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rcvbuf = 64 << 20;
  if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  socklen_t alen = sizeof a;
  if (getsockname(s, (struct sockaddr *)&a, &alen) < 0) die("getsockname");
  if (!udp && listen(s, 1) < 0) die("listen");
  printf("port %u\n", ntohs(a.sin_port));
  fflush(stdout);

  static uint8_t bufs[BATCH][DGRAM_MAX];
  static struct mmsghdr msgs[BATCH];
  static struct iovec iov[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = DGRAM_MAX;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  static uint8_t chunk[CHUNK];
  int conn = -1;
  char line[256];
  size_t line_have = 0;

  for (;;) {
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = conn >= 0 ? conn : (udp || !eof ? s : -1), .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) {
      if (udp) {
        for (;;) {
          int n = recvmmsg(s, msgs, BATCH, MSG_DONTWAIT, NULL);
          if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            die("recvmmsg");
          }
          uint64_t t = now_ns();
          if (datagrams == 0) first_ns = t;
          last_ns = t;
          for (int i = 0; i < n; i++) {
            unsigned len = msgs[i].msg_len;
            const uint8_t *p = bufs[i];
            if (len < 16 || ((p[0] << 8) | p[1]) != 10 || ((unsigned)(p[2] << 8) | p[3]) != len) bad++;
            bytes += len;
          }
          datagrams += n;
          if (n < BATCH) break;
        }
      } else if (conn < 0) {
        conn = accept4(s, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0 && errno != EAGAIN) die("accept");
        if (conn >= 0) {
          setsockopt(conn, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
          close(s);
        }
      } else {
        for (;;) {
          ssize_t n = read(conn, chunk, CHUNK);
          if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            die("read");
          }
          if (n == 0) {
            eof = 1;
            close(conn);
            conn = -1;
            if (head_have || msg_left) bad++; /* the stream ended inside a message */
            break;
          }
          uint64_t t = now_ns();
          if (bytes == 0) first_ns = t;
          last_ns = t;
          bytes += (uint64_t)n;
          stream(chunk, (size_t)n);
          if (n < CHUNK) break;
        }
      }
    }
    if (fds[0].revents) {
      ssize_t n = read(0, line + line_have, sizeof line - line_have);
      if (n <= 0) return 0;
      line_have += (size_t)n;
      for (size_t i = 0; i < line_have; i++) {
        if (line[i] != '\n') continue;
        report(udp);
        memmove(line, line + i + 1, line_have - i - 1);
        line_have -= i + 1;
        i = (size_t)-1;
      }
      if (line_have == sizeof line) line_have = 0;
    }
  }
}
