// podflow's netns addon: switch the calling thread into a network namespace
// for one synchronous call, and list a namespace's interfaces. N-API only, so
// the binary survives Node upgrades. Linux only.
//
// setns(2) moves only the calling thread (the JS main thread here). Only
// synchronous syscalls made inside runInNetns happen in the target namespace;
// a socket opened there (a capture handle) stays in it after switching back.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

#include "memory.h"
#include "napi_util.h"
#include "packet_socket.h"

// Throws an Error with .code = "ENOENT"-style name, .errno and .syscall, and
// a message naming what failed, like Node's own system errors.
static void throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char message[512];
  snprintf(message, sizeof message, "%s %s: %s", syscall, path ? path : "", strerror(err));
  napi_value msg, code, error, errno_value, syscall_value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  if (path) {
    napi_value path_value;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_value);
    napi_set_named_property(env, error, "path", path_value);
  }
  napi_throw(env, error);
}

static bool get_path_arg(napi_env env, napi_value value, char *out, size_t size, const char *usage) {
  napi_valuetype type;
  size_t length = 0;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string ||
      napi_get_value_string_utf8(env, value, out, size, &length) != napi_ok || length == 0 ||
      length >= size - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return false;
  }
  return true;
}

static const char RUN_USAGE[] = "usage: runInNetns(nsPath: string, fn: () => T): T";

// runInNetns(nsPath, fn): enter the namespace at nsPath (e.g. /run/netns/x or
// /proc/<pid>/ns/net), call fn(), and always come back, returning fn's result
// or rethrowing its exception.
static napi_value run_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  napi_valuetype fn_type = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &fn_type);
  if (fn_type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", RUN_USAGE);
    return NULL;
  }
  if (!get_path_arg(env, argv[0], path, sizeof path, RUN_USAGE)) return NULL;

  // /proc/thread-self, not /proc/self: the thread's own namespace is what we
  // must return to (another thread may be elsewhere).
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    throw_errno(env, errno, "open", "/proc/thread-self/ns/net");
    return NULL;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(home);
    throw_errno(env, err, "open", path);
    return NULL;
  }
  // EINVAL here means "not a network namespace"; EPERM lacks CAP_SYS_ADMIN.
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    close(home);
    throw_errno(env, err, "setns", path);
    return NULL;
  }
  close(target);

  napi_value global, result = NULL;
  napi_get_global(env, &global);
  // An exception from fn stays pending and propagates once we return NULL.
  napi_call_function(env, global, argv[1], 0, NULL, &result);

  if (setns(home, CLONE_NEWNET) != 0) {
    // The JS thread would keep running in a pod's namespace: every later
    // socket, capture and namespace switch would be wrong. Not recoverable.
    char message[256];
    snprintf(message, sizeof message, "podflow netns: cannot return to the agent's network namespace: %s",
             strerror(errno));
    napi_fatal_error("runInNetns", NAPI_AUTO_LENGTH, message, NAPI_AUTO_LENGTH);
  }
  close(home);
  return result;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static int prefix_length(const struct sockaddr *mask) {
  if (!mask) return 0;
  const unsigned char *bytes;
  size_t len;
  if (mask->sa_family == AF_INET) {
    bytes = (const unsigned char *)&((const struct sockaddr_in *)mask)->sin_addr;
    len = 4;
  } else if (mask->sa_family == AF_INET6) {
    bytes = (const unsigned char *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
    len = 16;
  } else {
    return 0;
  }
  int bits = 0;
  for (size_t i = 0; i < len; i++) bits += __builtin_popcount(bytes[i]);
  return bits;
}

// listInterfaceAddresses(): getifaddrs(3) of the calling thread's current
// namespace (it talks netlink, so inside runInNetns it sees the pod's). One
// entry per (interface, address); 'packet' entries describe interfaces
// including those without addresses. Flags are the IFF_* bits.
static napi_value list_interface_addresses(napi_env env, napi_callback_info info) {
  (void)info;
  struct ifaddrs *list;
  if (getifaddrs(&list) != 0) {
    throw_errno(env, errno, "getifaddrs", NULL);
    return NULL;
  }
  napi_value result;
  napi_create_array(env, &result);
  uint32_t n = 0;
  for (struct ifaddrs *it = list; it; it = it->ifa_next) {
    if (!it->ifa_addr) continue;
    int family = it->ifa_addr->sa_family;
    napi_value entry, flags, index;
    napi_create_object(env, &entry);
    napi_set_named_property(env, entry, "name", make_string(env, it->ifa_name));
    napi_create_uint32(env, it->ifa_flags, &flags);
    napi_set_named_property(env, entry, "flags", flags);
    if (family == AF_PACKET) {
      const struct sockaddr_ll *ll = (const struct sockaddr_ll *)it->ifa_addr;
      char mac[3 * 8] = "";
      size_t at = 0;
      for (int i = 0; i < ll->sll_halen && i < 8; i++)
        at += snprintf(mac + at, sizeof mac - at, i ? ":%02x" : "%02x", ll->sll_addr[i]);
      napi_create_int32(env, ll->sll_ifindex, &index);
      napi_set_named_property(env, entry, "index", index);
      napi_set_named_property(env, entry, "mac", make_string(env, mac));
      napi_set_named_property(env, entry, "family", make_string(env, "packet"));
    } else if (family == AF_INET || family == AF_INET6) {
      char text[INET6_ADDRSTRLEN];
      const void *addr = family == AF_INET ? (const void *)&((struct sockaddr_in *)it->ifa_addr)->sin_addr
                                           : (const void *)&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr;
      inet_ntop(family, addr, text, sizeof text);
      napi_value prefix;
      napi_create_int32(env, prefix_length(it->ifa_netmask), &prefix);
      napi_set_named_property(env, entry, "family", make_string(env, family == AF_INET ? "inet" : "inet6"));
      napi_set_named_property(env, entry, "address", make_string(env, text));
      napi_set_named_property(env, entry, "prefixLength", prefix);
    } else {
      continue;
    }
    napi_set_element(env, result, n++, entry);
  }
  freeifaddrs(list);
  return result;
}

// threadNetnsInode(): inode of the calling thread's network namespace, for
// tests and sanity checks ("did we come back?").
static napi_value thread_netns_inode(napi_env env, napi_callback_info info) {
  (void)info;
  struct stat st;
  if (stat("/proc/thread-self/ns/net", &st) != 0) {
    throw_errno(env, errno, "stat", "/proc/thread-self/ns/net");
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)st.st_ino, &v);
  return v;
}

static void warm_work(uv_work_t *req) { (void)req; }
static void warm_done(uv_work_t *req, int status) {
  (void)status;
  free(req);
}

napi_value init(napi_env env, napi_value exports) {
  // libuv starts all threadpool threads on its first use, and they inherit
  // the starting thread's namespace. Queue a no-op now, while the JS thread is
  // certainly in the agent's own namespace, so the pool is never born inside
  // a pod (where fs/dns work would then run forever).
  uv_loop_t *loop = NULL;
  uv_work_t *warm = malloc(sizeof *warm);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !warm ||
      uv_queue_work(loop, warm, warm_work, warm_done) != 0) {
    free(warm);
    napi_throw_error(env, NULL, "podflow netns: cannot start the libuv threadpool");
    return NULL;
  }

  napi_property_descriptor props[] = {
    {"runInNetns", NULL, run_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
    {"listInterfaceAddresses", NULL, list_interface_addresses, NULL, NULL, NULL, napi_enumerable, NULL},
    {"threadNetnsInode", NULL, thread_netns_inode, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK_NAPI(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  if (!memory_init(env, exports)) return NULL;
  return packet_socket_init(env, exports);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
