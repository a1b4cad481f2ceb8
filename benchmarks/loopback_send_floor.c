/* The least time one core needs to write one small chunk to each of N loopback TCP streams.
 *
 *   gcc -O2 -o /tmp/loopback_send_floor benchmarks/loopback_send_floor.c && /tmp/loopback_send_floor 500
 *
 * A child process on CPU 1 holds N connections and reads them with epoll, as a load generator would;
 * the parent on CPU 0 sends 160 bytes (one SSE token chunk) to every connection, then sleeps 20 ms (one
 * decode step), 300 times. No interpreter, no event loop: the kernel's TCP path alone. A server whose
 * tokens of one step are all due at one instant cannot get its timing error under half this spread. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 500, steps = 300, one = 1;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    bind(listener, (struct sockaddr *)&addr, sizeof addr);
    listen(listener, 4096);
    getsockname(listener, (struct sockaddr *)&addr, &len);
    if (fork() == 0) {
        pin(1);
        int ep = epoll_create1(0), open = n;
        for (int i = 0; i < n; i++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            connect(c, (struct sockaddr *)&addr, sizeof addr);
            struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        }
        char buf[65536];
        struct epoll_event ready[512];
        while (open > 0) {
            int k = epoll_wait(ep, ready, 512, 5000);
            if (k <= 0) break;
            for (int i = 0; i < k; i++)
                if (read(ready[i].data.fd, buf, sizeof buf) <= 0) close(ready[i].data.fd), open--;
        }
        _exit(0);
    }
    pin(0);
    int *socks = malloc(n * sizeof *socks);
    double *spread = malloc(steps * sizeof *spread);
    for (int i = 0; i < n; i++) {
        socks[i] = accept(listener, NULL, NULL);
        setsockopt(socks[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    usleep(200000);
    char chunk[160];
    memset(chunk, 'x', sizeof chunk);
    for (int s = 0; s < steps; s++) {
        double start = now();
        for (int i = 0; i < n; i++) send(socks[i], chunk, sizeof chunk, MSG_DONTWAIT);
        spread[s] = now() - start;
        usleep(20000);
    }
    qsort(spread, steps, sizeof *spread, by_value);
    double median = spread[steps / 2];
    printf("{\"streams\": %d, \"us_per_send_p50\": %.2f, \"step_spread_ms_p50\": %.3f, "
           "\"step_spread_ms_p99\": %.3f, \"half_median_spread_ms\": %.3f}\n",
           n, 1e6 * median / n, 1e3 * median, 1e3 * spread[steps * 99 / 100], 1e3 * median / 2);
    for (int i = 0; i < n; i++) close(socks[i]);
    wait(NULL);
    return 0;
}
