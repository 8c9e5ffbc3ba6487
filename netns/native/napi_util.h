// What both files of the netns addon need from N-API: a check that throws
// the last N-API error (unless an exception is pending already) and returns.
#pragma once
#include <stdbool.h>
#include <node_api.h>

#define CHECK_NAPI(env, call)        \
  do {                               \
    if ((call) != napi_ok) {         \
      throw_last_napi_error(env);    \
      return NULL;                   \
    }                                \
  } while (0)

static inline void throw_last_napi_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "N-API call failed");
}
