/*
 * ring_floor.c - the latency floor of a token ring on this topology: one UDP datagram passed
 * round a ring of processes (one per network namespace), blocking sockets, no protocol work,
 * no crypto. The origin sends, waits for the datagram to come back from the last process and
 * records the rotation time; the others forward what they receive to the next address.
 *
 *   ring_floor origin BIND NEXT PORT SIZE COUNT WARMUP   (prints p50/p90/p99/max in us)
 *   ring_floor relay  BIND NEXT PORT SIZE                (until killed)
 *
 * Run by benches/ring_floor.sh.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
	if (argc < 6) {
		fprintf(stderr, "usage: %s origin|relay BIND NEXT PORT SIZE [COUNT WARMUP]\n", argv[0]);
		return 2;
	}
	int origin = strcmp(argv[1], "origin") == 0;
	/* RING_FLOOR_SPIN=1: poll with MSG_DONTWAIT instead of sleeping in recv (shows how much of
	 * a hop is the wake-up of a sleeping process; burns a CPU per process). */
	const char *spin_env = getenv("RING_FLOOR_SPIN");
	int rflags = spin_env && strcmp(spin_env, "1") == 0 ? MSG_DONTWAIT : 0;
	int port = atoi(argv[4]);
	size_t size = (size_t)atoi(argv[5]);
	long count = argc > 6 ? atol(argv[6]) : 10000;
	long warmup = argc > 7 ? atol(argv[7]) : 200;
	if (size < 8 || size > 65000 || count < 1 || warmup < 0) {
		fprintf(stderr, "bad size or count\n");
		return 2;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) { perror("socket"); return 1; }
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in next = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, argv[2], &me.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &next.sin_addr) != 1) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 1; }
	char *buf = calloc(1, size);
	if (!buf) return 1;
	if (!origin) {
		for (;;) {
			ssize_t n = recv(fd, buf, size, rflags);
			if (n < 0 && rflags && errno == EAGAIN) continue;
			if (n < 0) { perror("recv"); return 1; }
			if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&next, sizeof next) < 0) { perror("sendto"); return 1; }
		}
	}
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint64_t *rot = calloc((size_t)count, sizeof *rot);
	if (!rot) return 1;
	for (long i = 0; i < warmup + count; i++) {
		memcpy(buf, &i, sizeof i);
		uint64_t t0 = now_ns();
		if (sendto(fd, buf, size, 0, (struct sockaddr *)&next, sizeof next) < 0) { perror("sendto"); return 1; }
		for (;;) {
			ssize_t n = recv(fd, buf, size, rflags);
			if (n < 0 && rflags && errno == EAGAIN) {
				if (now_ns() - t0 > 2000000000ull) { fprintf(stderr, "datagram lost\n"); return 1; }
				continue;
			}
			if (n < 0) { perror("recv (datagram lost?)"); return 1; }
			long got;
			memcpy(&got, buf, sizeof got);
			if (got == i) break;
		}
		if (i >= warmup) rot[i - warmup] = now_ns() - t0;
	}
	qsort(rot, (size_t)count, sizeof *rot, cmp_u64);
	printf("size %zu rotations %ld p50 %.1f p90 %.1f p99 %.1f max %.1f us\n", size, count,
	       rot[count / 2] / 1e3, rot[count * 9 / 10] / 1e3, rot[count * 99 / 100] / 1e3, rot[count - 1] / 1e3);
	return 0;
}
