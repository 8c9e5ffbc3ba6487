{
  'targets': [
    {
      'target_name': 'netns',
      'sources': ['netns.c', 'packet_socket.c', 'memory.c', 'memory_gc.cc'],
      'cflags': ['-Wall', '-Wextra'],
      'cflags_c': ['-std=gnu11'],
    },
  ],
}
