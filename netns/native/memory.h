// Memory of the process, not of a namespace: returning what malloc keeps (memory.c).
#pragma once
#include <node_api.h>

// Adds returnFreeMemory() to exports.
napi_value memory_init(napi_env env, napi_value exports);
