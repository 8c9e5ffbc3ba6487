// The capture socket of podflow's netns addon (packet_socket.c).
#pragma once
#include <node_api.h>

// Adds the PacketSocket class to exports.
napi_value packet_socket_init(napi_env env, napi_value exports);
