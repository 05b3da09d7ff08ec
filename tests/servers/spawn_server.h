/*
 * Starts a test server (a child process that prints its TCP port on the
 * first line of stdout) and stops it. For the cmocka tests only.
 */
#ifndef CB_SPAWN_SERVER_H
#define CB_SPAWN_SERVER_H

#include <sys/types.h>

struct cb_test_server {
	pid_t pid;
	int port;
};

/*
 * Runs argv (argv[0] looked up in PATH) with stdin from /dev/null, waits at
 * most timeout_ms for the port line, and fills server. Returns 0, or -1 (the
 * child, if any, is killed and reaped) with a reason on stderr.
 */
int cb_test_server_start(const char *const argv[], int timeout_ms, struct cb_test_server *server);

/* SIGTERM, then SIGKILL after 5 s; reaps the child. Safe on a server that never started. */
void cb_test_server_stop(struct cb_test_server *server);

#endif
