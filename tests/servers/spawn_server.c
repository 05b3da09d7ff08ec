/* Starts and stops the local test servers; see spawn_server.h. */
#include "spawn_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits at most timeout_ms for pid to exit; returns 1 when reaped. */
static int reap_within(pid_t pid, long long timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	struct timespec tick = {0, 20 * 1000 * 1000};
	int wstatus;

	for (;;) {
		pid_t got = waitpid(pid, &wstatus, WNOHANG);
		if (got == pid || (got < 0 && errno != EINTR))
			return 1;
		if (now_ms() >= end)
			return 0;
		nanosleep(&tick, NULL);
	}
}

void cb_test_server_stop(struct cb_test_server *server)
{
	if (server->pid <= 0)
		return;
	kill(server->pid, SIGTERM);
	if (!reap_within(server->pid, 5000)) {
		kill(server->pid, SIGKILL);
		reap_within(server->pid, 5000);
	}
	server->pid = -1;
	server->port = 0;
}

int cb_test_server_start(const char *const argv[], int timeout_ms, struct cb_test_server *server)
{
	char line[64];
	size_t used = 0;
	long long end = now_ms() + timeout_ms;
	int fds[2];
	int devnull;
	pid_t pid;

	server->pid = -1;
	server->port = 0;
	if (pipe(fds) != 0) {
		perror("pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		/* execvp wants writable strings: give it copies (the child only). */
		size_t argc = 0;
		while (argv[argc] != NULL)
			argc++;
		char **copy = calloc(argc + 1, sizeof(*copy));
		for (size_t i = 0; copy != NULL && i < argc; i++)
			copy[i] = strdup(argv[i]);
		if (copy != NULL)
			execvp(copy[0], copy);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	server->pid = pid;

	/* Read one line, a byte at a time so nothing after it is swallowed. */
	while (used + 1 < sizeof(line)) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		long long left = end - now_ms();
		ssize_t got;

		if (left <= 0) {
			fprintf(stderr, "%s did not print its port in %d ms\n", argv[0], timeout_ms);
			goto fail;
		}
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		got = read(fds[0], line + used, 1);
		if (got <= 0) {
			fprintf(stderr, "%s exited before printing its port\n", argv[0]);
			goto fail;
		}
		if (line[used] == '\n')
			break;
		used++;
	}
	line[used] = '\0';
	server->port = atoi(line);
	if (server->port <= 0 || server->port > 65535) {
		fprintf(stderr, "%s printed \"%s\", not a port\n", argv[0], line);
		goto fail;
	}
	/* The child's later output goes nowhere; a full pipe would block it, so drop it. */
	close(fds[0]);
	return 0;
fail:
	close(fds[0]);
	cb_test_server_stop(server);
	return -1;
}
