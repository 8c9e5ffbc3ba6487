// podflow's capture: one AF_PACKET socket per pod network namespace, bound
// to every interface of it, with a memory-mapped TPACKET_V3 ring, read by one
// reader thread into a queue shared by every socket, and handed to JS in
// batches of pcap-style records, each batch of one interface.
//
// Why our own and not libpcap: every frame must carry the kernel's
// virtio_net_hdr (PACKET_VNET_HDR), whose gso_size says how many wire
// segments a GSO/GRO super-packet stands for. That option must be set before
// the ring is, and libpcap has no way to (setting it on pcap_fileno() after
// activation fails with EBUSY). The kernel filter is a few fixed
// instructions (build_filter below), so libpcap is not needed at all.
//
// Why one socket per namespace, bound to all its interfaces: it exists from
// the moment the namespace is found, before the CNI plugin moves the pod's
// veth in, so a pod's first packet on its new eth0 is captured like every
// later one; and a pod costs one ring, whatever its interfaces.
//
// Beside it, when JS asks (onLinks), a netlink socket in the same namespace
// subscribed to its link and address changes: the reader thread reads its
// notifications and tells JS that the namespace's interfaces changed (an
// address the CNI plugin set, a link that came or went), so JS lists them
// again at once instead of polling every namespace.
//
// Why a reader thread and a shared queue: a kernel ring must hold whatever
// arrives while nobody reads it. Read by the JS thread, which meters and
// exports too, that is tens of milliseconds, so every pod needed megabytes of
// ring (mapped whole into the process, traffic or not), or small rings lost a
// quiet pod's first burst. The reader thread sleeps in epoll_wait and copies
// each retired ring block out within a scheduler wake-up, into chunks of one
// queue shared by all pods and bounded as a whole (capture.queueBytes): a
// burst at one pod can use all of it, and chunks are allocated only while
// there is a backlog. A packet the queue has no room for is counted
// (queueDropped), never silently lost.
//
// Records (flow/records.ts): 16-byte little-endian header
// ts_sec, ts_usec, caplen, wirelen; then the 10-byte virtio_net_hdr as the
// kernel wrote it; then the frame's captured bytes. caplen counts the 10
// bytes, wirelen is the frame's length on the wire (the super-packet's, for
// GSO). A VLAN tag the kernel took out of the frame (tp_vlan_tci) is put back
// in, as libpcap does, so the bytes are the wire's.
//
// Threads: the JS thread opens (set-up on a libuv pool thread), delivers and
// closes; the reader thread owns each open socket's ring read position and
// writes chunks. They meet under one mutex: requests (add, sweep, remove) go
// to the reader through an eventfd and are acknowledged on a condition
// variable; filled chunks come back on a list, announced by a uv_async.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

#include "napi_util.h"
#include "packet_socket.h"

#define RECORD_HEADER_BYTES 16
#define VNET_BYTES ((uint32_t)sizeof(struct virtio_net_hdr))
#define VLAN_TAG_BYTES 4
/** Every network namespace's lo has this ifindex. */
#define LOOPBACK_IFINDEX 1
/** Bytes of one queue chunk: a record never spans two. */
#define CHUNK_BYTES (256u * 1024u)
/** Runs of one socket's records per chunk, at most. */
#define CHUNK_SEGMENTS 128
/** Free chunks kept for the next burst; more are freed. */
#define SPARE_CHUNKS 4

typedef enum { S_IDLE, S_OPENING, S_OPEN, S_CLOSED } socket_state;

typedef struct {
  // Set by openAsync on the JS thread, read by the pool thread.
  char ns_path[4096];
  // The namespace ns_path must still name (a path is reused when a pod's
  // name comes back); 0: not checked.
  uint32_t expect_inode, expect_dev;
  uint32_t buffer_bytes;
  uint32_t snaplen;
  uint32_t dns_snaplen;  // bytes kept of a UDP or TCP packet to or from port 53 (>= snaplen)
  uint32_t block_timeout_ms;
  bool loopback;         // keep lo's packets (once: its outgoing copies are dropped)
  bool own_frames_only;  // drop frames addressed to another host (a bridge's floods)
  bool watch_links;      // also open the netlink socket for link and address changes
  // Results of the pool thread.
  int fd;
  int link_fd;  // -1 unless watch_links
  uint8_t *map;
  uint32_t block_size, block_nr;
  int err;                // errno of the failure, 0 on success
  const char *err_stage;  // "netns" | "socket"
  char err_what[160];
} open_job;

typedef struct packet_socket {
  napi_env env;
  napi_ref self;      // strong (count 1) from openAsync until closed
  napi_ref on_batch;  // (buffer, start, end, count) => void
  napi_ref on_error;  // (err) => void
  napi_ref on_links;  // () => void, or NULL: the namespace's links or addresses changed
  napi_ref open_callback;
  napi_async_context async;  // from openAsync until closed with no JS call of ours on the stack
  uint32_t calls;            // JS calls of ours on the stack (see end_async)
  socket_state state;
  bool close_requested;  // close() while opening
  uv_work_t work;
  open_job job;
  // The open socket. fd, map and geometry are fixed while open.
  int fd;
  int link_fd;  // the netlink socket, or -1
  uint8_t *map;
  uint32_t block_size, block_nr;
  // Reader thread only: its place in the reader's table, and the read position.
  uint32_t slot;
  uint32_t current;        // block to read next
  uint32_t left_in_block;  // packets of the current block not yet read (0: not started)
  uint8_t *next_packet;
  // Written by the reader, read by the JS thread (atomics).
  uint64_t queue_dropped;
  uint64_t queued;  // records put in chunks
  // Set by the reader when the socket fails, under the lock; read by the JS thread.
  int error;
  struct packet_socket *next_failed;
  // Set by the reader when links or addresses changed, under the lock; cleared by the JS thread when told.
  bool links_changed;
  struct packet_socket *next_changed;
  // JS thread only.
  double received, dropped;  // PACKET_STATISTICS resets on every read: summed here
  uint64_t delivered;
} packet_socket;

// ---------------------------------------------------------------------------
// The queue: chunks of records, filled by the reader, delivered on the JS thread.

/** A run of one socket's records of one interface. */
typedef struct {
  packet_socket *socket;
  uint32_t start, end, count;
  int ifindex;
  uint16_t hatype;  // ARPHRD_* of the interface
} segment;

typedef struct chunk {
  struct chunk *next;
  uint8_t *data;
  uint32_t used;
  uint32_t nsegments;
  segment segments[CHUNK_SEGMENTS];
  napi_ref buffer;  // a Buffer over data, made at its first delivery (JS thread)
  uint32_t busy;    // deliveries from it running now (JS thread)
  bool finished;    // every segment delivered; recycle once not busy
} chunk;

typedef enum { R_ADD, R_SWEEP, R_REMOVE, R_EXIT } request_type;

typedef struct request {
  struct request *next;
  request_type type;
  packet_socket *socket;
  bool done;
} request;

static struct {
  bool started;
  napi_env env;
  pthread_t thread;
  int epfd;
  int wake;  // eventfd: requests waiting
  pthread_mutex_t lock;
  pthread_cond_t acked;
  request *requests, *requests_tail;
  chunk *ready, *ready_tail;
  chunk *free;
  uint32_t free_count;
  size_t allocated, max_bytes;
  packet_socket *failed;   // failed sockets whose error JS has not been told yet
  packet_socket *changed;  // sockets whose links changed since JS was last told
  uv_async_t async;
  // Reader thread only. epoll events name a slot, not a socket: an event
  // returned before a socket left may come after, and then finds its slot
  // empty (or reused by another socket, which a sweep does no harm).
  chunk *filling;
  packet_socket **slots;
  uint32_t nslots;
  // JS thread only: where delivery is, shared by nested deliveries (a
  // callback that polls or closes delivers from the same place on).
  chunk *cursor;
  uint32_t cursor_segment;
  uint32_t turn_budget;
} reader = {.lock = PTHREAD_MUTEX_INITIALIZER, .acked = PTHREAD_COND_INITIALIZER, .max_bytes = 64u << 20, .turn_budget = 10000};

static void put_u32le(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

// Reader thread: a chunk to fill, or NULL when the queue is at its bound.
static chunk *take_chunk(void) {
  pthread_mutex_lock(&reader.lock);
  chunk *c = reader.free;
  if (c) {
    reader.free = c->next;
    reader.free_count--;
  } else if (reader.allocated + CHUNK_BYTES <= reader.max_bytes) {
    c = calloc(1, sizeof *c);
    // Its own mapping, not malloc: a freed chunk goes back to the system at
    // once, so the agent's RSS falls again after a burst.
    void *data = c ? mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (data != MAP_FAILED) {
      c->data = data;
      reader.allocated += CHUNK_BYTES;
    } else {
      free(c);
      c = NULL;
    }
  }
  pthread_mutex_unlock(&reader.lock);
  if (c) {
    c->next = NULL;
    c->used = 0;
    c->nsegments = 0;
    c->finished = false;
  }
  return c;
}

// Reader thread: hands the chunk being filled to the JS thread.
static void publish(void) {
  chunk *c = reader.filling;
  if (!c || c->nsegments == 0) return;
  reader.filling = NULL;
  pthread_mutex_lock(&reader.lock);
  if (reader.ready_tail) reader.ready_tail->next = c;
  else reader.ready = c;
  reader.ready_tail = c;
  pthread_mutex_unlock(&reader.lock);
  uv_async_send(&reader.async);
}

// Reader thread: room for `bytes` more of socket s in the chunk being
// filled, in a run of its records of interface `ifindex`; NULL when the
// queue is full.
static segment *room_for(packet_socket *s, int ifindex, uint16_t hatype, uint32_t bytes) {
  chunk *c = reader.filling;
  segment *last = c && c->nsegments ? &c->segments[c->nsegments - 1] : NULL;
  bool same_run = last && last->socket == s && last->ifindex == ifindex;
  if (c && (c->used + bytes > CHUNK_BYTES || (c->nsegments == CHUNK_SEGMENTS && !same_run))) {
    publish();
    c = NULL;
    same_run = false;
  }
  if (!c) {
    c = reader.filling = take_chunk();
    if (!c) return NULL;
  }
  if (same_run) return last;
  segment *g = &c->segments[c->nsegments++];
  *g = (segment){.socket = s, .start = c->used, .end = c->used, .ifindex = ifindex, .hatype = hatype};
  return g;
}

// Reader thread: copies one packet of s's ring into the queue.
static void append_record(packet_socket *s, const struct sockaddr_ll *ll, const uint8_t *frame_start, uint32_t mac_offset, uint32_t snap,
                          uint32_t wire, uint32_t sec, uint32_t nsec, bool vlan_valid, uint16_t vlan_tci, uint16_t vlan_tpid) {
  // Only an Ethernet header has a place for the tag.
  bool ethernet = ll->sll_hatype == ARPHRD_ETHER || ll->sll_hatype == ARPHRD_LOOPBACK;
  bool reinsert = vlan_valid && ethernet && snap >= 12;
  uint32_t data = VNET_BYTES + snap + (reinsert ? VLAN_TAG_BYTES : 0);
  segment *g = room_for(s, ll->sll_ifindex, ll->sll_hatype, RECORD_HEADER_BYTES + data);
  if (!g) {
    __atomic_add_fetch(&s->queue_dropped, 1, __ATOMIC_RELAXED);
    return;
  }
  chunk *c = reader.filling;
  uint8_t *r = c->data + c->used;
  put_u32le(r, sec);
  put_u32le(r + 4, nsec / 1000);
  put_u32le(r + 8, data);
  put_u32le(r + 12, wire + (reinsert ? VLAN_TAG_BYTES : 0));
  uint8_t *d = r + RECORD_HEADER_BYTES;
  const uint8_t *mac = frame_start + mac_offset;
  memcpy(d, mac - VNET_BYTES, VNET_BYTES);
  d += VNET_BYTES;
  if (reinsert) {
    memcpy(d, mac, 12);
    uint16_t tpid = vlan_tpid ? vlan_tpid : ETH_P_8021Q;
    d[12] = (uint8_t)(tpid >> 8);
    d[13] = (uint8_t)tpid;
    d[14] = (uint8_t)(vlan_tci >> 8);
    d[15] = (uint8_t)vlan_tci;
    memcpy(d + 16, mac + 12, snap - 12);
  } else {
    memcpy(d, mac, snap);
  }
  c->used += RECORD_HEADER_BYTES + data;
  g->end = c->used;
  g->count++;
  __atomic_add_fetch(&s->queued, 1, __ATOMIC_RELAXED);
}

// Reader thread: copies every block the kernel has retired into the queue
// and gives the blocks back to the kernel.
static void sweep(packet_socket *s) {
  for (;;) {
    struct tpacket_block_desc *block = (struct tpacket_block_desc *)(s->map + (size_t)s->current * s->block_size);
    if ((__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) return;
    if (s->left_in_block == 0) {
      s->left_in_block = block->hdr.bh1.num_pkts;
      s->next_packet = (uint8_t *)block + block->hdr.bh1.offset_to_first_pkt;
    }
    for (; s->left_in_block > 0; s->left_in_block--) {
      struct tpacket3_hdr *h = (struct tpacket3_hdr *)s->next_packet;
      const struct sockaddr_ll *ll = (const struct sockaddr_ll *)((uint8_t *)h + TPACKET_ALIGN(sizeof *h));
      bool vlan = (h->tp_status & TP_STATUS_VLAN_VALID) != 0;
      uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ? h->hv1.tp_vlan_tpid : 0;
      append_record(s, ll, (uint8_t *)h, h->tp_mac, h->tp_snaplen, h->tp_len, h->tp_sec, h->tp_nsec, vlan, h->hv1.tp_vlan_tci, tpid);
      s->next_packet += h->tp_next_offset;
    }
    __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    s->current = (s->current + 1) % s->block_nr;
  }
}

// Reader thread: the socket failed (ENETDOWN: its interface went down or
// away). It leaves the epoll set; once its records are out, JS is told.
static void socket_failed(packet_socket *s) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = EIO;
  epoll_ctl(reader.epfd, EPOLL_CTL_DEL, s->fd, NULL);
  sweep(s);
  publish();
  pthread_mutex_lock(&reader.lock);
  s->error = err;
  s->next_failed = reader.failed;
  reader.failed = s;
  pthread_mutex_unlock(&reader.lock);
  uv_async_send(&reader.async);
}

// Reader thread: the namespace's netlink socket has notifications. Their
// content does not matter (JS lists the interfaces again); they are read
// to empty the socket. ENOBUFS (notifications lost to a full buffer) means
// changes happened too.
static void links_changed(packet_socket *s) {
  uint8_t discard[8192];
  for (;;) {
    ssize_t n = recv(s->link_fd, discard, sizeof discard, MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == ENOBUFS || errno == EINTR))) continue;
    break;
  }
  pthread_mutex_lock(&reader.lock);
  if (!s->links_changed) {
    s->links_changed = true;
    s->next_changed = reader.changed;
    reader.changed = s;
  }
  pthread_mutex_unlock(&reader.lock);
  uv_async_send(&reader.async);
}

/** epoll data of a socket's netlink socket: its slot's, with this bit. */
#define LINK_EVENT ((uint64_t)1 << 32)

static uint32_t take_slot(packet_socket *s) {
  for (uint32_t i = 0; i < reader.nslots; i++) {
    if (!reader.slots[i]) {
      reader.slots[i] = s;
      return i;
    }
  }
  uint32_t n = reader.nslots ? reader.nslots * 2 : 64;
  packet_socket **grown = realloc(reader.slots, n * sizeof *grown);
  if (!grown) return UINT32_MAX;
  memset(grown + reader.nslots, 0, (n - reader.nslots) * sizeof *grown);
  reader.slots = grown;
  uint32_t i = reader.nslots;
  reader.nslots = n;
  reader.slots[i] = s;
  return i;
}

static void handle_requests(void) {
  uint64_t n;
  if (read(reader.wake, &n, sizeof n) < 0) {
    // EAGAIN: another pass already took them.
  }
  pthread_mutex_lock(&reader.lock);
  request *list = reader.requests;
  reader.requests = reader.requests_tail = NULL;
  pthread_mutex_unlock(&reader.lock);
  bool exit_now = false;
  for (request *r = list; r; r = r->next) {
    packet_socket *s = r->socket;
    switch (r->type) {
      case R_ADD: {
        s->slot = take_slot(s);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)s->slot + 1};
        // Without a slot or a place in the epoll set, the socket is read only
        // when JS polls it: slower, never silent (its kernel drops count).
        if (s->slot != UINT32_MAX) {
          epoll_ctl(reader.epfd, EPOLL_CTL_ADD, s->fd, &ev);
          struct epoll_event link_ev = {.events = EPOLLIN, .data.u64 = LINK_EVENT | ((uint64_t)s->slot + 1)};
          if (s->link_fd >= 0) epoll_ctl(reader.epfd, EPOLL_CTL_ADD, s->link_fd, &link_ev);
        }
        sweep(s);
        break;
      }
      case R_SWEEP:
        sweep(s);
        break;
      case R_REMOVE:
        sweep(s);
        epoll_ctl(reader.epfd, EPOLL_CTL_DEL, s->fd, NULL);
        if (s->link_fd >= 0) epoll_ctl(reader.epfd, EPOLL_CTL_DEL, s->link_fd, NULL);
        if (s->slot != UINT32_MAX) reader.slots[s->slot] = NULL;
        break;
      case R_EXIT:
        exit_now = true;
        break;
    }
  }
  publish();
  pthread_mutex_lock(&reader.lock);
  for (request *r = list; r; r = r->next) r->done = true;
  pthread_cond_broadcast(&reader.acked);
  pthread_mutex_unlock(&reader.lock);
  if (exit_now) pthread_exit(NULL);
}

// The reader asks the scheduler for a short time slice (EEVDF's custom
// slice, Linux 6.12+; no privilege needed, nice unchanged): woken by a
// retired block, a task with a short slice has an early deadline and runs
// before the JS thread's slice is over, so the ring is emptied within a
// fraction of a millisecond however long the JS thread's batch. Older
// kernels refuse the request (EINVAL) or ignore it; the reader runs as before.
static void ask_for_short_slice(void) {
  struct {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
  } attr = {.size = sizeof attr, .policy = SCHED_OTHER, .runtime = 100 * 1000};
  (void)syscall(SYS_sched_setattr, 0, &attr, 0);
}

static void *reader_main(void *arg) {
  (void)arg;
  ask_for_short_slice();
  struct epoll_event events[64];
  for (;;) {
    int n = epoll_wait(reader.epfd, events, 64, -1);
    for (int i = 0; i < n; i++) {
      uint64_t data = events[i].data.u64;
      if (data == 0) {
        handle_requests();
        continue;
      }
      uint64_t slot = data & ~LINK_EVENT;
      packet_socket *s = slot <= reader.nslots ? reader.slots[slot - 1] : NULL;
      if (!s) continue;
      if (data & LINK_EVENT) links_changed(s);
      else if (events[i].events & (EPOLLERR | EPOLLHUP)) socket_failed(s);
      else sweep(s);
    }
    publish();
  }
  return NULL;
}

// JS thread: sends a request to the reader and waits until it is done
// (microseconds: a sweep copies what is ready and returns).
static void ask_reader(request_type type, packet_socket *s) {
  request r = {.type = type, .socket = s};
  pthread_mutex_lock(&reader.lock);
  if (reader.requests_tail) reader.requests_tail->next = &r;
  else reader.requests = &r;
  reader.requests_tail = &r;
  uint64_t one = 1;
  if (write(reader.wake, &one, sizeof one) < 0) {
    // EAGAIN: the counter is full, the reader is awake anyway.
  }
  while (!r.done) pthread_cond_wait(&reader.acked, &reader.lock);
  pthread_mutex_unlock(&reader.lock);
}

static bool deliver(uint32_t budget);
static void tell_failures(void);
static void tell_link_changes(void);

static void on_async(uv_async_t *handle) {
  (void)handle;
  if (deliver(reader.turn_budget)) tell_failures();
  tell_link_changes();
}

static void stop_reader(void *arg) {
  (void)arg;
  if (!reader.started) return;
  ask_reader(R_EXIT, NULL);
  pthread_join(reader.thread, NULL);
  uv_close((uv_handle_t *)&reader.async, NULL);
  close(reader.epfd);
  close(reader.wake);
  reader.started = false;
}

static bool start_reader(napi_env env) {
  if (reader.started) return true;
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return false;
  reader.epfd = epoll_create1(EPOLL_CLOEXEC);
  reader.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (reader.epfd < 0 || reader.wake < 0) return false;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
  if (epoll_ctl(reader.epfd, EPOLL_CTL_ADD, reader.wake, &ev) != 0) return false;
  if (uv_async_init(loop, &reader.async, on_async) != 0) return false;
  // Capture must never keep the process alive by itself.
  uv_unref((uv_handle_t *)&reader.async);
  if (pthread_create(&reader.thread, NULL, reader_main, NULL) != 0) {
    uv_close((uv_handle_t *)&reader.async, NULL);
    return false;
  }
  // Named so /proc/PID/task shows the reader's CPU apart from the JS thread's.
  pthread_setname_np(reader.thread, "podflow-reader");
  reader.env = env;
  reader.started = true;
  napi_add_env_cleanup_hook(env, stop_reader, NULL);
  return true;
}

// ---------------------------------------------------------------------------
// Delivery (JS thread)

static napi_value make_error(napi_env env, int err, const char *stage, const char *message_text) {
  napi_value message, code, error, errno_value, stage_value;
  napi_create_string_utf8(env, message_text, NAPI_AUTO_LENGTH, &message);
  // strerrorname_np knows every errno (libuv's names lack some, ESTALE among them).
  const char *name = strerrorname_np(err);
  napi_create_string_utf8(env, name ? name : uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, stage, NAPI_AUTO_LENGTH, &stage_value);
  napi_set_named_property(env, error, "stage", stage_value);
  return error;
}

static void end_async(packet_socket *s);

// Calls a JS function held by ref with the socket object as `this`, in the
// socket's async context (so promise jobs and nextTicks it queues run after).
static void call_js(packet_socket *s, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = s->env;
  napi_value fn, self, result;
  if (!fn_ref || napi_get_reference_value(env, fn_ref, &fn) != napi_ok || !fn) return;
  if (napi_get_reference_value(env, s->self, &self) != napi_ok || !self) return;
  s->calls++;
  napi_make_callback(env, s->async, self, fn, argc, argv, &result);
  s->calls--;
  end_async(s);
}

// The async context ends once the socket is closed and no callback of ours
// runs (napi_make_callback still uses it until it returns), in a JS call or a
// libuv callback, never in the GC finalizer: ending one there crashed node
// (SIGSEGV in AsyncWrap::EmitDestroy during a scavenge, seen with cap).
static void end_async(packet_socket *s) {
  if (s->state == S_CLOSED && s->calls == 0 && s->async) {
    napi_async_destroy(s->env, s->async);
    s->async = NULL;
  }
}

static void free_chunk_data(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  munmap(data, CHUNK_BYTES);
}

// Back to the free list once delivered and no delivery from it runs; past
// SPARE_CHUNKS the chunk is freed (its memory once its Buffer is collected).
static void recycle(chunk *c) {
  pthread_mutex_lock(&reader.lock);
  bool keep = reader.free_count < SPARE_CHUNKS;
  if (keep) {
    c->next = reader.free;
    reader.free = c;
    reader.free_count++;
  } else {
    reader.allocated -= CHUNK_BYTES;
  }
  pthread_mutex_unlock(&reader.lock);
  if (keep) return;
  if (c->buffer) napi_delete_reference(reader.env, c->buffer);
  else munmap(c->data, CHUNK_BYTES);
  free(c);
}

// A Buffer over the chunk's memory, made once (or, where this Node allows
// no external buffers, a copy of the segment: then start is 0).
static bool chunk_buffer(napi_env env, chunk *c, segment *g, napi_value *buffer, uint32_t *start) {
  *start = g->start;
  if (!c->buffer && napi_create_external_buffer(env, CHUNK_BYTES, c->data, free_chunk_data, NULL, buffer) == napi_ok) {
    napi_create_reference(env, *buffer, 1, &c->buffer);
  }
  if (c->buffer) return napi_get_reference_value(env, c->buffer, buffer) == napi_ok;
  *start = 0;
  void *copy = NULL;
  return napi_create_buffer_copy(env, g->end - g->start, c->data + g->start, &copy, buffer) == napi_ok;
}

// Delivers queued segments in order, at most `budget` records (then the rest
// waits for the next event-loop turn). Nested calls (a callback that polls
// or closes) go on from the same place, so nothing is skipped or repeated.
// Returns true when the queue is empty.
static bool deliver(uint32_t budget) {
  napi_env env = reader.env;
  uint32_t records = 0;
  while (records < budget) {
    if (!reader.cursor) {
      pthread_mutex_lock(&reader.lock);
      chunk *c = reader.ready;
      if (c) {
        reader.ready = c->next;
        if (!reader.ready) reader.ready_tail = NULL;
      }
      pthread_mutex_unlock(&reader.lock);
      if (!c) return true;
      reader.cursor = c;
      reader.cursor_segment = 0;
    }
    chunk *c = reader.cursor;
    if (reader.cursor_segment == c->nsegments) {
      reader.cursor = NULL;
      c->finished = true;
      if (c->busy == 0) recycle(c);
      continue;
    }
    segment g = c->segments[reader.cursor_segment++];
    packet_socket *s = g.socket;
    // Closed with this still queued: only when a callback closed its own
    // socket during a delivery (close delivers everything queued first).
    if (s->state != S_OPEN || g.count == 0) continue;
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value buffer, argv[6];
    uint32_t start = 0;
    if (chunk_buffer(env, c, &g, &buffer, &start)) {
      argv[0] = buffer;
      napi_create_uint32(env, start, &argv[1]);
      napi_create_uint32(env, start + (g.end - g.start), &argv[2]);
      napi_create_uint32(env, g.count, &argv[3]);
      napi_create_int32(env, g.ifindex, &argv[4]);
      napi_create_uint32(env, g.hatype, &argv[5]);
      s->delivered += g.count;
      records += g.count;
      c->busy++;
      call_js(s, s->on_batch, 6, argv);
      c->busy--;
      if (c->finished && c->busy == 0) recycle(c);
    }
    napi_close_handle_scope(env, scope);
  }
  // Budget spent: the rest next turn.
  uv_async_send(&reader.async);
  return false;
}

// Tells JS of sockets that failed, once their records are delivered (the
// reader queued those before it listed the socket as failed).
static void tell_failures(void) {
  for (;;) {
    pthread_mutex_lock(&reader.lock);
    packet_socket *s = reader.failed;
    if (s) reader.failed = s->next_failed;
    pthread_mutex_unlock(&reader.lock);
    if (!s) return;
    if (s->state != S_OPEN) continue;
    napi_handle_scope scope;
    napi_open_handle_scope(reader.env, &scope);
    char message[128];
    snprintf(message, sizeof message, "packet socket: %s", strerror(s->error));
    napi_value argv[1] = {make_error(reader.env, s->error, "socket", message)};
    call_js(s, s->on_error, 1, argv);
    napi_close_handle_scope(reader.env, scope);
  }
}

// Tells JS of namespaces whose links or addresses changed, once per change
// noticed (however many notifications came meanwhile).
static void tell_link_changes(void) {
  for (;;) {
    pthread_mutex_lock(&reader.lock);
    packet_socket *s = reader.changed;
    if (s) {
      reader.changed = s->next_changed;
      s->links_changed = false;
    }
    pthread_mutex_unlock(&reader.lock);
    if (!s) return;
    if (s->state != S_OPEN) continue;
    napi_handle_scope scope;
    napi_open_handle_scope(reader.env, &scope);
    call_js(s, s->on_links, 0, NULL);
    napi_close_handle_scope(reader.env, scope);
  }
}

// ---------------------------------------------------------------------------
// Opening (a libuv pool thread)

static void fail_job(open_job *job, int err, const char *stage, const char *what) {
  job->err = err;
  job->err_stage = stage;
  snprintf(job->err_what, sizeof job->err_what, "%s", what);
}

// The kernel filter: drops what is not the pod's traffic, keeps snaplen
// bytes of the rest (the kernel copies only that much into the ring, so a
// 64 KiB GSO super-packet takes snaplen bytes of it), dns_snaplen bytes of
// DNS (UDP or TCP, port 53 at either end) so whole DNS messages reach the
// DNS feature while other traffic keeps its short snaplen.
//   - a frame to another host's MAC (PACKET_OTHERHOST): a bridge still
//     learning floods other pods' unicast to every port, and such frames
//     must not become flows at bystander pods;
//   - on lo (ifindex 1): every packet (unless loopback), else the copy
//     leaving it (lo hands every packet over twice, leaving and arriving).
//   - DNS is recognised in an Ethernet frame (a pod's veth, lo; the kernel
//     took any VLAN tag off): IPv4 (not a later fragment) or IPv6 without
//     extension headers before UDP or TCP, source or destination port 53.
//     Anything else, or a frame of another layout, gets snaplen.
// The frame's length is checked before the loads that need it: a classic
// BPF load past the end ends the program with 0, which would drop the frame
// unseen instead of leaving a short one to the decoder's counters.
// Jump offsets are relative (target = next instruction + offset); the
// instruction numbers in the comments are the targets.
#define FILTER_LENGTH 38
#define DNS_PORT 53
static void build_filter(open_job *job, struct sock_filter program[FILTER_LENGTH]) {
  const uint32_t pkttype = (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE), ifindex = (uint32_t)(SKF_AD_OFF + SKF_AD_IFINDEX);
  struct sock_filter p[FILTER_LENGTH] = {
      /*  0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, pkttype),
      /*  1 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /*  2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OTHERHOST, job->own_frames_only ? 34 : 0, 0),  // -> 37
      /*  3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ifindex),
      /*  4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, LOOPBACK_IFINDEX, 0, 2),                            // lo: 5, else 7
      /*  5 */ BPF_STMT(BPF_MISC | BPF_TXA, 0),                                                       // loopback; else: -> 37
      /*  6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 30, 0),                            // -> 37, else 7
      /*  7 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /*  8 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 14 + 20 + 4, 0, 26),                               // room for IPv4 ports: 9, else 35
      /*  9 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),                                                // EtherType
      /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 7),                                   // IPv4: 11, else 18
      /* 11 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14 + 9),                                            // protocol
      /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 1, 0),                               // -> 14
      /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 21),                              // -> 14, else 35
      /* 14 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 14 + 6),                                           // flags, fragment offset
      /* 15 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 19, 0),                                  // a later fragment: -> 35
      /* 16 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),                                              // X = IPv4 header length
      /* 17 */ BPF_STMT(BPF_JMP | BPF_JA, 5),                                                        // -> 23
      /* 18 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 16),                               // IPv6: 19, else 35
      /* 19 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 14 + 6),                                           // next header
      /* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 1, 0),                               // -> 22
      /* 21 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 13),                              // -> 22, else 35
      /* 22 */ BPF_STMT(BPF_LDX | BPF_W | BPF_IMM, 40),                                             // X = IPv6 header length
      /* 23 */ BPF_STMT(BPF_MISC | BPF_TXA, 0),                                                      // the ports in the frame?
      /* 24 */ BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 14 + 4),
      /* 25 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 26 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /* 27 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_X, 0, 0, 7),                                         // yes: 28, else 35
      /* 28 */ BPF_STMT(BPF_MISC | BPF_TXA, 0),
      /* 29 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, 14 + 4),
      /* 30 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),                                                      // X = IP header length
      /* 31 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14),                                               // source port
      /* 32 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DNS_PORT, 3, 0),                                  // -> 36
      /* 33 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14 + 2),                                           // destination port
      /* 34 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DNS_PORT, 1, 0),                                  // -> 36, else 35
      /* 35 */ BPF_STMT(BPF_RET | BPF_K, job->snaplen),
      /* 36 */ BPF_STMT(BPF_RET | BPF_K, job->dns_snaplen),
      /* 37 */ BPF_STMT(BPF_RET | BPF_K, 0),
  };
  if (!job->loopback) p[5] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 31);  // -> 37
  memcpy(program, p, sizeof p);
}

// Ring geometry: blocks of a power of two pages, at most 128 KiB and at
// least 4 per ring, so a retired block frees a quarter of the ring or less.
static void plan_ring(open_job *job) {
  uint32_t block = (uint32_t)sysconf(_SC_PAGESIZE);
  while (block * 2 <= 128 * 1024 && block * 2 * 4 <= job->buffer_bytes) block *= 2;
  uint32_t frame = TPACKET_ALIGN(TPACKET3_HDRLEN + 16 + VNET_BYTES + job->dns_snaplen);
  while (block < frame * 2) block *= 2;
  job->block_size = block;
  job->block_nr = job->buffer_bytes / block;
  if (job->block_nr < 2) job->block_nr = 2;
}

// The socket, set up in the calling thread's namespace: no packet reaches it
// before bind(), by which time the vnet header, the filter and the ring are in
// place (protocol 0 at socket() receives nothing). Bound to ifindex 0: every
// interface of the namespace, also those that appear later.
static int setup_socket(open_job *job) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail_job(job, errno, "socket", "socket(AF_PACKET)");
    return -1;
  }
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) {
    fail_job(job, errno, "socket", "PACKET_VNET_HDR");
    goto fail;
  }
  int version = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) {
    fail_job(job, errno, "socket", "PACKET_VERSION");
    goto fail;
  }
  struct sock_filter program[FILTER_LENGTH];
  build_filter(job, program);
  struct sock_fprog fprog = {.len = FILTER_LENGTH, .filter = program};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0) {
    fail_job(job, errno, "socket", "SO_ATTACH_FILTER");
    goto fail;
  }
  plan_ring(job);
  struct tpacket_req3 req = {
      .tp_block_size = job->block_size,
      .tp_block_nr = job->block_nr,
      // Only checked by the kernel for V3 (it must divide the block).
      .tp_frame_size = TPACKET_ALIGNMENT << 7,
      .tp_frame_nr = job->block_nr * (job->block_size / (TPACKET_ALIGNMENT << 7)),
      .tp_retire_blk_tov = job->block_timeout_ms,
  };
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
    fail_job(job, errno, "socket", "PACKET_RX_RING");
    goto fail;
  }
  size_t map_bytes = (size_t)job->block_size * job->block_nr;
  void *map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    fail_job(job, errno, "socket", "mmap");
    goto fail;
  }
  job->map = map;
  struct sockaddr_ll address = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = 0};
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    fail_job(job, errno, "socket", "bind");
    munmap(job->map, map_bytes);
    job->map = NULL;
    goto fail;
  }
  return fd;
fail:
  close(fd);
  return -1;
}

// The netlink socket for link and address changes, in the calling thread's
// namespace. Subscribing needs no privilege.
static int setup_link_watch(open_job *job) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) {
    fail_job(job, errno, "socket", "socket(AF_NETLINK)");
    return -1;
  }
  struct sockaddr_nl address = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    fail_job(job, errno, "socket", "bind(AF_NETLINK)");
    close(fd);
    return -1;
  }
  return fd;
}

// On a libuv pool thread: enter the namespace (if any), set the socket up,
// come back. A pool thread left in a pod's namespace would run every later fs
// and dns job there: not recoverable, so the process aborts.
static void open_work(uv_work_t *req) {
  packet_socket *s = req->data;
  open_job *job = &s->job;
  job->fd = -1;
  job->link_fd = -1;
  int home = -1;
  if (job->ns_path[0]) {
    home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
      fail_job(job, errno, "netns", "open /proc/thread-self/ns/net");
      return;
    }
    int target = open(job->ns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      fail_job(job, errno, "netns", "open");
      close(home);
      return;
    }
    struct stat st;
    if (job->expect_inode && (fstat(target, &st) != 0 || st.st_ino != job->expect_inode || st.st_dev != job->expect_dev)) {
      fail_job(job, ESTALE, "netns", "another namespace at");
      close(target);
      close(home);
      return;
    }
    if (setns(target, CLONE_NEWNET) != 0) {
      fail_job(job, errno, "netns", "setns");
      close(target);
      close(home);
      return;
    }
    close(target);
  }
  // The link watch first: a change while the packet socket is set up is not missed.
  if (job->watch_links) job->link_fd = setup_link_watch(job);
  if (!job->watch_links || job->link_fd >= 0) job->fd = setup_socket(job);
  if (job->fd < 0 && job->link_fd >= 0) {
    close(job->link_fd);
    job->link_fd = -1;
  }
  if (home >= 0) {
    if (setns(home, CLONE_NEWNET) != 0) {
      fprintf(stderr, "podflow netns: a libuv pool thread cannot return to the agent's network namespace: %s\n", strerror(errno));
      abort();
    }
    close(home);
  }
}

// Adds the kernel's counters since the last read (PACKET_STATISTICS resets them).
static void read_kernel_stats(packet_socket *s) {
  struct tpacket_stats_v3 st;
  socklen_t len = sizeof st;
  memset(&st, 0, sizeof st);
  if (getsockopt(s->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    s->received += st.tp_packets;  // tp_packets includes the dropped ones
    s->dropped += st.tp_drops;
  }
}

static void release_ring(packet_socket *s) {
  // munmap, then close: the socket is released with its ring. The kernel
  // counters are read first (they die with the socket).
  read_kernel_stats(s);
  munmap(s->map, (size_t)s->block_size * s->block_nr);
  close(s->fd);
  s->fd = -1;
  s->map = NULL;
  if (s->link_fd >= 0) close(s->link_fd);
  s->link_fd = -1;
}

static void open_done(uv_work_t *req, int status) {
  (void)status;
  packet_socket *s = req->data;
  open_job *job = &s->job;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value err = NULL;
  if (job->fd >= 0 && s->close_requested) {
    munmap(job->map, (size_t)job->block_size * job->block_nr);
    close(job->fd);
    if (job->link_fd >= 0) close(job->link_fd);
    err = make_error(env, ECANCELED, "closed", "closed while opening");
  } else if (job->fd < 0) {
    char message[sizeof job->err_what + sizeof job->ns_path + 64];
    snprintf(message, sizeof message, "%s %s: %s", job->err_what, job->ns_path[0] ? job->ns_path : "(own namespace)", strerror(job->err));
    err = make_error(env, job->err, job->err_stage, message);
  } else if (!start_reader(env)) {
    munmap(job->map, (size_t)job->block_size * job->block_nr);
    close(job->fd);
    if (job->link_fd >= 0) close(job->link_fd);
    err = make_error(env, EAGAIN, "socket", "cannot start the capture reader thread");
  } else {
    s->fd = job->fd;
    s->link_fd = job->link_fd;
    s->map = job->map;
    s->block_size = job->block_size;
    s->block_nr = job->block_nr;
    s->state = S_OPEN;
    ask_reader(R_ADD, s);
  }
  if (err) s->state = S_CLOSED;
  napi_value callback, undefined, self, result;
  napi_get_undefined(env, &undefined);
  napi_ref callback_ref = s->open_callback;
  s->open_callback = NULL;
  if (napi_get_reference_value(env, callback_ref, &callback) == napi_ok && callback &&
      napi_get_reference_value(env, s->self, &self) == napi_ok && self) {
    napi_value argv[1] = {err ? err : undefined};
    s->calls++;
    napi_make_callback(env, s->async, self, callback, 1, argv, &result);
    s->calls--;
  }
  napi_delete_reference(env, callback_ref);
  if (err) {
    uint32_t count = 0;
    napi_reference_unref(env, s->self, &count);
  }
  end_async(s);
  napi_close_handle_scope(env, scope);
}

// ---------------------------------------------------------------------------
// The JS class

static packet_socket *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "not a PacketSocket");
    return NULL;
  }
  return data;
}

static bool get_uint_property(napi_env env, napi_value object, const char *name, uint32_t *out) {
  napi_value v;
  napi_valuetype type;
  if (napi_get_named_property(env, object, name, &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok) return false;
  if (type == napi_undefined) return true;
  return type == napi_number && napi_get_value_uint32(env, v, out) == napi_ok;
}

static bool get_bool_property(napi_env env, napi_value object, const char *name, bool *out) {
  napi_value v;
  napi_valuetype type;
  if (napi_get_named_property(env, object, name, &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok) return false;
  if (type == napi_undefined) return true;
  return type == napi_boolean && napi_get_value_bool(env, v, out) == napi_ok;
}

static const char OPEN_USAGE[] =
    "usage: openAsync(nsPath: string, options: { bufferBytes, snaplen, dnsSnaplen?, blockTimeoutMs, loopback, ownFramesOnly, "
    "expectInode, expectDev }, callback: (err) => void): void";

static napi_value open_async(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  packet_socket *s = unwrap(env, info, &argc, argv);
  if (!s) return NULL;
  if (s->state != S_IDLE) {
    napi_throw_error(env, "ERR_PODFLOW_SOCKET_USED", "a PacketSocket opens once");
    return NULL;
  }
  open_job *job = &s->job;
  memset(job, 0, sizeof *job);
  size_t length = 0;
  napi_valuetype type;
  uint32_t buffer_bytes = 1u << 20, snaplen = 256, dns_snaplen = 0, block_timeout = 100;
  job->own_frames_only = true;
  job->watch_links = s->on_links != NULL;
  bool ok = argc == 3;
  ok = ok && napi_get_value_string_utf8(env, argv[0], job->ns_path, sizeof job->ns_path, &length) == napi_ok &&
       length < sizeof job->ns_path - 1;
  ok = ok && napi_typeof(env, argv[1], &type) == napi_ok && type == napi_object &&
       get_uint_property(env, argv[1], "bufferBytes", &buffer_bytes) && get_uint_property(env, argv[1], "snaplen", &snaplen) &&
       get_uint_property(env, argv[1], "dnsSnaplen", &dns_snaplen) &&
       get_uint_property(env, argv[1], "blockTimeoutMs", &block_timeout) &&
       get_bool_property(env, argv[1], "loopback", &job->loopback) &&
       get_bool_property(env, argv[1], "ownFramesOnly", &job->own_frames_only) &&
       get_uint_property(env, argv[1], "expectInode", &job->expect_inode) &&
       get_uint_property(env, argv[1], "expectDev", &job->expect_dev);
  // A record must fit a chunk.
  if (dns_snaplen < snaplen) dns_snaplen = snaplen;  // not given: DNS keeps snaplen too
  ok = ok && snaplen > 0 && RECORD_HEADER_BYTES + VNET_BYTES + VLAN_TAG_BYTES + dns_snaplen <= CHUNK_BYTES && buffer_bytes > 0;
  ok = ok && napi_typeof(env, argv[2], &type) == napi_ok && type == napi_function;
  if (!ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", OPEN_USAGE);
    return NULL;
  }
  job->buffer_bytes = buffer_bytes;
  job->snaplen = snaplen;
  job->dns_snaplen = dns_snaplen;
  job->block_timeout_ms = block_timeout;
  napi_create_reference(env, argv[2], 1, &s->open_callback);
  napi_value self, resource_name;
  napi_get_reference_value(env, s->self, &self);
  napi_create_string_utf8(env, "podflow:PacketSocket", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, self, resource_name, &s->async);
  uint32_t count = 0;
  napi_reference_ref(env, s->self, &count);
  s->state = S_OPENING;
  s->work.data = s;
  int r = uv_queue_work(uv_default_loop(), &s->work, open_work, open_done);
  if (r != 0) {
    s->state = S_CLOSED;
    napi_delete_reference(env, s->open_callback);
    s->open_callback = NULL;
    napi_reference_unref(env, s->self, &count);
    end_async(s);
    napi_throw_error(env, uv_err_name(r), uv_strerror(r));
  }
  return NULL;
}

// poll(): delivers, now, every packet of this socket the kernel has handed
// over (every retired block), and whatever else is queued. Returns how many of
// this socket's were delivered.
static napi_value socket_poll(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  packet_socket *s = unwrap(env, info, &argc, NULL);
  if (!s) return NULL;
  uint64_t before = s->delivered;
  if (s->state == S_OPEN) {
    ask_reader(R_SWEEP, s);
    deliver(UINT32_MAX);
  }
  napi_value v;
  napi_create_double(env, (double)(s->delivered - before), &v);
  return v;
}

static napi_value socket_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  packet_socket *s = unwrap(env, info, &argc, NULL);
  if (!s) return NULL;
  if (s->state == S_OPEN) read_kernel_stats(s);
  napi_value result, v;
  napi_create_object(env, &result);
  napi_create_double(env, s->received, &v);
  napi_set_named_property(env, result, "received", v);
  napi_create_double(env, s->dropped, &v);
  napi_set_named_property(env, result, "dropped", v);
  napi_create_double(env, (double)__atomic_load_n(&s->queue_dropped, __ATOMIC_RELAXED), &v);
  napi_set_named_property(env, result, "queueDropped", v);
  napi_create_double(env, (double)s->delivered, &v);
  napi_set_named_property(env, result, "delivered", v);
  return result;
}

// close(): delivers what the kernel handed over (as poll()), then releases
// the socket and its ring; what the kernel still held in the block it was
// filling was received but never delivered (JS counts it as unread; wait two
// block timeouts first to keep it).
// During openAsync the callback then fails with stage 'closed'. Idempotent.
static napi_value socket_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  packet_socket *s = unwrap(env, info, &argc, NULL);
  if (!s) return NULL;
  if (s->state == S_OPENING) {
    s->close_requested = true;
  } else if (s->state == S_OPEN) {
    ask_reader(R_REMOVE, s);
    deliver(UINT32_MAX);
    if (s->state == S_OPEN) {  // a callback may have closed it meanwhile
      s->state = S_CLOSED;
      release_ring(s);
      // Off the failed list: nothing may point at it once `self` is released.
      pthread_mutex_lock(&reader.lock);
      for (packet_socket **at = &reader.failed; *at; at = &(*at)->next_failed) {
        if (*at == s) {
          *at = s->next_failed;
          break;
        }
      }
      for (packet_socket **at = &reader.changed; *at; at = &(*at)->next_changed) {
        if (*at == s) {
          *at = s->next_changed;
          break;
        }
      }
      pthread_mutex_unlock(&reader.lock);
      uint32_t count = 0;
      napi_reference_unref(env, s->self, &count);
    }
  }
  end_async(s);
  napi_value v;
  napi_get_boolean(env, true, &v);
  return v;
}

static void socket_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  packet_socket *s = data;
  // Only reachable once nothing holds `self`: never opened, or closed (an
  // open socket holds a strong reference, so no queued segment outlives it).
  if (s->on_batch) napi_delete_reference(env, s->on_batch);
  if (s->on_error) napi_delete_reference(env, s->on_error);
  if (s->on_links) napi_delete_reference(env, s->on_links);
  napi_delete_reference(env, s->self);
  free(s);
}

static const char NEW_USAGE[] =
    "usage: new PacketSocket(onBatch: (buffer, start, end, count, ifindex, hatype) => void, onError: (err) => void, "
    "onLinks?: () => void)";

static napi_value socket_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined, t2 = napi_undefined;
  if (argc >= 2) {
    napi_typeof(env, argv[0], &t0);
    napi_typeof(env, argv[1], &t1);
  }
  if (argc >= 3) napi_typeof(env, argv[2], &t2);
  if (t0 != napi_function || t1 != napi_function || (t2 != napi_function && t2 != napi_undefined)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", NEW_USAGE);
    return NULL;
  }
  packet_socket *s = calloc(1, sizeof *s);
  if (!s) {
    napi_throw_error(env, NULL, "PacketSocket: out of memory");
    return NULL;
  }
  s->env = env;
  s->fd = -1;
  s->link_fd = -1;
  s->state = S_IDLE;
  if (napi_wrap(env, self, s, socket_finalize, NULL, &s->self) != napi_ok) {
    free(s);
    throw_last_napi_error(env);
    return NULL;
  }
  napi_create_reference(env, argv[0], 1, &s->on_batch);
  napi_create_reference(env, argv[1], 1, &s->on_error);
  if (t2 == napi_function) napi_create_reference(env, argv[2], 1, &s->on_links);
  return self;
}

static const char CONFIGURE_USAGE[] = "usage: configureCapture({ queueBytes?: number, recordsPerTurn?: number }): void";

// configureCapture({ queueBytes, recordsPerTurn }): the queue's bound (at
// least one chunk), and how many records one event-loop turn delivers.
static napi_value configure_capture(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t queue = (uint32_t)(reader.max_bytes > UINT32_MAX ? UINT32_MAX : reader.max_bytes), per_turn = reader.turn_budget;
  napi_valuetype type = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_object ||
      !get_uint_property(env, argv[0], "queueBytes", &queue) || !get_uint_property(env, argv[0], "recordsPerTurn", &per_turn) ||
      queue < CHUNK_BYTES || per_turn == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", CONFIGURE_USAGE);
    return NULL;
  }
  pthread_mutex_lock(&reader.lock);
  reader.max_bytes = queue;
  pthread_mutex_unlock(&reader.lock);
  reader.turn_budget = per_turn;
  return NULL;
}

// captureQueue(): { allocatedBytes, maxBytes } of the shared queue now.
static napi_value capture_queue(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&reader.lock);
  double allocated = (double)reader.allocated, max = (double)reader.max_bytes;
  pthread_mutex_unlock(&reader.lock);
  napi_value result, v;
  napi_create_object(env, &result);
  napi_create_double(env, allocated, &v);
  napi_set_named_property(env, result, "allocatedBytes", v);
  napi_create_double(env, max, &v);
  napi_set_named_property(env, result, "maxBytes", v);
  return result;
}

napi_value packet_socket_init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"openAsync", NULL, open_async, NULL, NULL, NULL, napi_default, NULL},
      {"poll", NULL, socket_poll, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, socket_stats, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, socket_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value constructor, fn;
  CHECK_NAPI(env, napi_define_class(env, "PacketSocket", NAPI_AUTO_LENGTH, socket_new, NULL, sizeof methods / sizeof methods[0],
                                 methods, &constructor));
  CHECK_NAPI(env, napi_set_named_property(env, exports, "PacketSocket", constructor));
  CHECK_NAPI(env, napi_create_function(env, "configureCapture", NAPI_AUTO_LENGTH, configure_capture, NULL, &fn));
  CHECK_NAPI(env, napi_set_named_property(env, exports, "configureCapture", fn));
  CHECK_NAPI(env, napi_create_function(env, "captureQueue", NAPI_AUTO_LENGTH, capture_queue, NULL, &fn));
  CHECK_NAPI(env, napi_set_named_property(env, exports, "captureQueue", fn));
  return exports;
}
