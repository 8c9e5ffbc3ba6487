/* Whole-process cost of one command, at microsecond resolution (GNU time and
 * /proc/<pid>/stat only give 10 ms ticks, too coarse for a 50 ms C loop).
 * Compiled at bench time by bench/lib/harness.ts:
 *   cc -O2 -o DIR/measure bench/lib/measure.c
 * usage: measure STDOUT_FILE COMMAND [ARGS...]
 * Runs COMMAND with its stdout sent to STDOUT_FILE (stderr inherited), waits
 * for it and prints one JSON line: wall time from fork to reap, user and
 * system CPU seconds and peak RSS from wait4(), and the exit status. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s STDOUT_FILE COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    perror(argv[1]);
    return 2;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 2;
  }
  if (pid == 0) {
    dup2(out, 1);
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("wait4");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  printf("{\"wallSeconds\":%.6f,\"userSeconds\":%.6f,\"sysSeconds\":%.6f,\"maxRssKiB\":%ld,\"exitCode\":%d}\n",
         wall, seconds(ru.ru_utime), seconds(ru.ru_stime), ru.ru_maxrss, code);
  return 0;
}
