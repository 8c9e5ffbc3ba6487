{
  'targets': [
    {
      'target_name': 'netns',
      'sources': ['netns.c'],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra'],
    },
  ],
}
