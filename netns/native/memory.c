// Returning freed memory to the kernel (memory.h), after the Kubernetes
// caches' lists: at a large cluster hundreds of MB of JSON pass through
// them, and two allocators keep what that left free.
//
// V8 keeps the old-space pages the lists' garbage left fragmented or empty:
// a regular collection neither compacts every such page nor gives its spare
// pages back. Isolate::LowMemoryNotification (memory_gc.cc) collects all it
// can, compacting, and releases them; N-API has no call for it. (At 100k
// pods, after two regular collections: RSS 229.6 -> 203.3 MiB, V8's
// committed heap 119.9 -> 104.9 MiB.)
//
// glibc's malloc then keeps what those buffers freed: it gives back only the
// top of each arena beyond the trim threshold, and the freed blocks lie
// between blocks that stay. malloc_trim(0) hands back every free page of
// every arena; Node has no binding for it.
#include "memory.h"

#include <malloc.h>

#include "napi_util.h"

static napi_value return_free_memory(napi_env env, napi_callback_info info) {
  (void)info;
  // First the garbage: collecting it frees the ArrayBuffers' backing stores into malloc, for the trim.
  collect_all_garbage();
  napi_value released;
  CHECK_NAPI(env, napi_get_boolean(env, malloc_trim(0) != 0, &released));
  return released;
}

napi_value memory_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"returnFreeMemory", NULL, return_free_memory, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK_NAPI(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
