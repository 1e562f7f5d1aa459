/*
 * Command line of the simulator:
 *   sim --seeds N [--base B] [--jobs J]   runs seeds B .. B+N-1 (B = 1)
 *   sim --seed S [-v]                     replays one seed (-v: full trace)
 * Seeds are split over J worker processes (default: 2). A failing seed
 * prints its trace tail, the failure and the command that replays it, and
 * the run exits non-zero.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "sim.h"

static volatile uint64_t current_seed;

static void on_abort(int sig)
{
	char buf[96];
	int n =
	    snprintf(buf, sizeof(buf),
		     "\nSIM ABORT in seed=%llu; replay: build/asan/tests/sim/sim --seed %llu -v\n",
		     (unsigned long long)current_seed, (unsigned long long)current_seed);

	if (write(2, buf, (size_t)n) < 0) {
		/* nothing more to do */
	}
	if (sig) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

#if defined(__SANITIZE_ADDRESS__)
static void on_sanitizer_death(void)
{
	on_abort(0);
}
#endif

static int run_range(uint64_t base, uint64_t n, unsigned jobs, unsigned job)
{
	char who[32];

	for (uint64_t seed = base + job; seed < base + n; seed += jobs) {
		current_seed = seed;
		if (sim_run(seed, false))
			return 1;
	}
	snprintf(who, sizeof(who), "sim worker %u", job);
	sim_stats_print(who);
	fflush(stdout);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: sim --seeds N [--base B] [--jobs J] | --seed S [-v]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t base = 1, n = 0, one = 0;
	unsigned jobs = 2;
	bool verbose = false, have_one = false;
	int failed = 0;
	struct timespec t0, t1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--base") && i + 1 < argc)
			base = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--jobs") && i + 1 < argc)
			jobs = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			one = strtoull(argv[++i], NULL, 0);
			have_one = true;
		} else if (!strcmp(argv[i], "-v"))
			verbose = true;
		else
			usage();
	}
	signal(SIGABRT, on_abort);
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_set_death_callback(on_sanitizer_death);
#endif
	if (have_one) {
		printf("sim: seed %llu\n", (unsigned long long)one);
		current_seed = one;
		sim_run(one, verbose);
		printf("sim: seed %llu passed\n", (unsigned long long)one);
		return 0;
	}
	if (!n)
		usage();
	if (!jobs)
		jobs = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	printf("sim: seeds %llu..%llu on %u workers\n", (unsigned long long)base,
	       (unsigned long long)(base + n - 1), jobs);
	fflush(stdout);
	for (unsigned j = 0; j < jobs; j++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			_exit(run_range(base, n, jobs, j));
	}
	for (unsigned j = 0; j < jobs; j++) {
		int st;

		if (wait(&st) < 0)
			break;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("sim: %llu schedules %s in %.1f s\n", (unsigned long long)n,
	       failed ? "FAILED" : "passed",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return failed;
}
