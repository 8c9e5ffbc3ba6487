// Memory of the process, not of a namespace: returning what V8 and malloc keep free (memory.c).
#pragma once
#include <node_api.h>

#ifdef __cplusplus
extern "C" {
#endif

// Adds returnFreeMemory() to exports.
napi_value memory_init(napi_env env, napi_value exports);

// V8 collects all the garbage it can, compacting, and gives back its free pages (memory_gc.cc).
void collect_all_garbage(void);

#ifdef __cplusplus
}
#endif
