// LD_PRELOAD shim for per-io-path.test.ts: counts the heap allocations (malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign; C++ `new` goes through malloc) made by ublk-ts queue
// threads, i.e. threads named "ublk<dev>-q<queue>", and writes the running total to the file
// named by $UBLK_TS_ALLOC_COUNTS every 50 ms. The test reads it before and after a fio run: the
// per-I/O path must leave it unchanged.
//
// Test-only code, built by the test with the system C compiler. No allocation of its own
// anywhere (the writer formats into a stack buffer and uses open/write/close).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong queue_allocs;
static __thread int is_queue_thread;  // once named ublk*-q*, a thread stays a queue thread

static void count(void) {
  if (!is_queue_thread) {
    char name[16] = {0};
    if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return;
    if (strncmp(name, "ublk", 4) != 0 || !strstr(name, "-q")) return;
    is_queue_thread = 1;
  }
  atomic_fetch_add_explicit(&queue_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void *memalign(size_t al, size_t n) { count(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { count(); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
  count();
  void *p = __libc_memalign(al, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}

static void *writer(void *arg) {
  const char *path = arg;
  char tmp[4096], buf[32];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  struct timespec ts = {0, 50 * 1000 * 1000};
  for (;;) {
    int len = snprintf(buf, sizeof(buf), "%lu\n", (unsigned long)atomic_load(&queue_allocs));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ssize_t w = write(fd, buf, (size_t)len);
      (void)w;
      close(fd);
      rename(tmp, path);
    }
    nanosleep(&ts, NULL);
  }
  return NULL;
}

__attribute__((constructor)) static void start_writer(void) {
  const char *path = getenv("UBLK_TS_ALLOC_COUNTS");
  if (!path || !*path) return;
  // Only the server process (server-main.js): the CLI that spawns it has the same environment.
  char cmd[4096];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
  close(fd);
  if (n <= 0) return;
  for (ssize_t i = 0; i < n; i++) if (cmd[i] == 0) cmd[i] = ' ';
  cmd[n] = 0;
  if (!strstr(cmd, "server-main")) return;
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &a, writer, (void *)path) == 0) pthread_setname_np(t, "alloc-counter");
}
