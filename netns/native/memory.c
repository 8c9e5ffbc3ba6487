// Returning freed heap memory to the kernel (memory.h).
//
// glibc's malloc keeps memory a program has freed for its next allocations:
// it gives back only the top of each arena beyond the trim threshold, so the
// 64 KiB socket buffers of the caches' first list (hundreds of MB of JSON at a
// large cluster), interleaved with blocks that stay, leave ~15 MiB resident
// that nothing uses. malloc_trim(0) hands back every free page of every arena.
// Node has no binding for it; this is the one call.
#include "memory.h"

#include <malloc.h>

#include "napi_util.h"

static napi_value return_free_memory(napi_env env, napi_callback_info info) {
  (void)info;
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
