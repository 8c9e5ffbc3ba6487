{
  'targets': [
    {
      'target_name': 'netns',
      'sources': ['netns.c', 'packet_socket.c', 'memory.c'],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra'],
    },
  ],
}
