/*
 * Runs the cold path in the helper program coldboot-cold. The front binary is
 * static and links neither libcurl nor libzip, so a warm start maps nothing;
 * on a cache miss it forks, execs the helper with the request, and reads back
 * one result record (protocol: bootstrap/cold.h).
 *
 * This file is also linked into coldboot-cold, for cb_cold_record_write.
 */
#define _GNU_SOURCE /* prctl(PR_SET_PDEATHSIG) */
#include "cold.h"
#include "helper_heap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGS_MAX 16

static char helper_path[PATH_MAX];

/* What one run of the helper needs besides its argv. */
struct spawn {
	const char *argv[ARGS_MAX]; /* argv[0] is set by run_helper */
	int pass_fds[2];            /* descriptors the helper inherits, -1 when unused */
	const char *request;        /* bytes sent on a pipe (the URL), NULL for none */
	int request_arg;            /* index in argv of that pipe's descriptor number */
	unsigned want_values;       /* how many values a valid record carries */
	int want_checksum;          /* non-zero: a successful record carries a checksum */
	int tune_heap;              /* non-zero: GLIBC_TUNABLES of helper_heap.h */
};

extern char **environ;

int cb_cold_record_write(int fd, const struct cb_cold_record *rec)
{
	char buf[CB_COLD_RECORD_MAX];
	size_t used;
	size_t len;
	ssize_t n;
	int w;

	w = snprintf(buf, sizeof(buf), "%s %d %d %u", CB_COLD_PROTOCOL, (int)rec->status,
		     rec->sys_errno, rec->value_count);
	used = (size_t)w;
	for (unsigned i = 0; i < rec->value_count && i < CB_COLD_VALUES_MAX; i++) {
		w = snprintf(buf + used, sizeof(buf) - used, " %" PRIu64, rec->values[i]);
		used += (size_t)w;
	}
	if (rec->have_checksum) {
		char sum[CB_CHECKSUM_TEXT_MAX];

		cb_checksum_format(&rec->checksum, sum, sizeof(sum));
		w = snprintf(buf + used, sizeof(buf) - used, " %s\n", sum);
	} else {
		w = snprintf(buf + used, sizeof(buf) - used, " -\n");
	}
	used += (size_t)w;
	/* The message is at most CB_ERROR_MESSAGE_MAX - 1 bytes: it always fits. */
	len = strnlen(rec->message, sizeof(rec->message));
	memcpy(buf + used, rec->message, len);
	used += len;
	do
		n = write(fd, buf, used);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if ((size_t)n != used) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/* Parses a decimal number token at *p, moving past it. Returns -1 when there is none. */
static int take_number(const char **p, uint64_t *value)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s != ' ')
		return -1;
	s++;
	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		unsigned digit = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - digit) / 10)
			return -1;
		v = v * 10 + digit;
		s++;
	}
	*value = v;
	*p = s;
	return 0;
}

/* Parses a record of len bytes from buf (NUL-terminated). Returns -1 when it is malformed. */
static int parse_record(const char *buf, size_t len, struct cb_cold_record *rec)
{
	const char *p = buf;
	const char *eol = memchr(buf, '\n', len);
	size_t magic_len = strlen(CB_COLD_PROTOCOL);
	uint64_t status;
	uint64_t sys_errno;
	uint64_t count;
	char sum[CB_CHECKSUM_TEXT_MAX];
	size_t sum_len;
	struct cb_error ignored;

	memset(rec, 0, sizeof(*rec));
	if (eol == NULL || len < magic_len || memcmp(buf, CB_COLD_PROTOCOL, magic_len) != 0)
		return -1;
	p += magic_len;
	if (take_number(&p, &status) != 0 || status > CB_E_NOT_FOUND ||
	    take_number(&p, &sys_errno) != 0 || sys_errno > 4095 || take_number(&p, &count) != 0 ||
	    count > CB_COLD_VALUES_MAX)
		return -1;
	rec->status = (enum cb_status)status;
	rec->sys_errno = (int)sys_errno;
	rec->value_count = (unsigned)count;
	for (unsigned i = 0; i < rec->value_count; i++)
		if (take_number(&p, &rec->values[i]) != 0)
			return -1;
	if (*p++ != ' ')
		return -1;
	sum_len = (size_t)(eol - p);
	if (sum_len == 0 || sum_len >= sizeof(sum))
		return -1;
	memcpy(sum, p, sum_len);
	sum[sum_len] = '\0';
	if (strcmp(sum, "-") != 0) {
		if (cb_checksum_parse(sum, &rec->checksum, &ignored) != CB_OK)
			return -1;
		rec->have_checksum = 1;
	}
	p = eol + 1;
	len -= (size_t)(p - buf);
	if (len >= sizeof(rec->message))
		return -1;
	memcpy(rec->message, p, len);
	rec->message[len] = '\0';
	return 0;
}

/*
 * Sends the request (the URL) on a pipe filled before the fork: the helper
 * then reads it to EOF, and a helper that dies early cannot make the front
 * die of SIGPIPE. The write end is non-blocking, so a request larger than
 * the pipe fails instead of hanging.
 */
static enum cb_status fill_request_pipe(const char *request, int *read_fd, struct cb_error *err)
{
	int fds[2];
	size_t len = strlen(request);
	ssize_t n;
	int saved;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot create a pipe: %s",
				    strerror(errno));
	(void)fcntl(fds[1], F_SETFL, O_NONBLOCK);
	do
		n = write(fds[1], request, len);
	while (n < 0 && errno == EINTR);
	saved = errno;
	close(fds[1]);
	if (n < 0 || (size_t)n != len) {
		close(fds[0]);
		if (n >= 0 || saved == EAGAIN)
			return cb_error_set(err, CB_E_CONFIG, 0,
					    "the bundle URL is too long (%zu bytes) to hand to the "
					    "download helper",
					    len);
		/* Reported like any other write: a full disk reads as a space error. */
		return cb_error_set(err, saved == ENOSPC || saved == EDQUOT ? CB_E_SPACE : CB_E_IO,
				    saved, "cannot hand the request to the download helper: %s",
				    strerror(saved));
	}
	*read_fd = fds[0];
	return CB_OK;
}

/*
 * The helper's environment: this one, plus GLIBC_TUNABLES for its heap when
 * asked and not set already. Built before the fork, so the child allocates
 * nothing, and this process's own environment (the handler's) is not touched.
 * Returns environ itself when nothing is added, NULL when out of memory.
 */
static char **helper_environment(const struct spawn *sp)
{
	static char tunables[] = "GLIBC_TUNABLES=" CB_HELPER_TUNABLES;
	size_t n = 0;
	char **env;

	if (!sp->tune_heap || getenv("GLIBC_TUNABLES") != NULL)
		return environ;
	while (environ[n] != NULL)
		n++;
	env = malloc((n + 2) * sizeof(*env));
	if (env == NULL)
		return NULL;
	memcpy(env, environ, n * sizeof(*env));
	env[n] = tunables;
	env[n + 1] = NULL;
	return env;
}

/* In the child: make the passed descriptors survive the exec, then exec. Never returns. */
static void exec_helper(const struct spawn *sp, char **env, int result_fd, pid_t parent)
{
	struct cb_cold_record rec;
	int fds[3] = {sp->pass_fds[0], sp->pass_fds[1], result_fd};
	int saved;

	/* The helper must not outlive a killed front: the lock goes with the front. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0 && fcntl(fds[i], F_SETFD, 0) != 0)
			_exit(127);
	execve(helper_path, (char *const *)(uintptr_t)sp->argv, env);
	saved = errno;
	memset(&rec, 0, sizeof(rec));
	rec.status = CB_E_CONFIG;
	rec.sys_errno = saved;
	snprintf(rec.message, sizeof(rec.message), "cannot run the download helper %.400s: %s",
		 helper_path, strerror(saved));
	(void)cb_cold_record_write(result_fd, &rec);
	/* _exit: the parent's unflushed stdio buffers must not be written twice. */
	_exit(127);
}

/* Reads the whole record (bounded) from fd. Returns its length; sets *overflow when too long. */
static size_t read_record(int fd, char *buf, size_t buf_size, int *overflow)
{
	size_t used = 0;

	*overflow = 0;
	for (;;) {
		ssize_t n = read(fd, buf + used, buf_size - 1 - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
		if (used == buf_size - 1) {
			*overflow = 1;
			break;
		}
	}
	buf[used] = '\0';
	return used;
}

static enum cb_status run_helper(struct spawn *sp, struct cb_cold_record *rec, struct cb_error *err)
{
	struct sigaction dfl;
	struct sigaction old_chld;
	char buf[CB_COLD_RECORD_MAX + 1];
	char fd_text[2][16];
	int result[2] = {-1, -1};
	int request_fd = -1;
	int restore_chld = 0;
	char **env = NULL;
	int overflow;
	int wstatus = 0;
	size_t len;
	pid_t pid;
	pid_t parent = getpid();
	enum cb_status status = CB_OK;

	sp->argv[0] = helper_path;
	if (sp->request != NULL) {
		status = fill_request_pipe(sp->request, &request_fd, err);
		if (status != CB_OK)
			goto out;
		snprintf(fd_text[1], sizeof(fd_text[1]), "%d", request_fd);
		sp->argv[sp->request_arg] = fd_text[1];
		sp->pass_fds[1] = request_fd;
	}
	if (pipe2(result, O_CLOEXEC) != 0) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot create a pipe: %s",
				      strerror(errno));
		goto out;
	}
	snprintf(fd_text[0], sizeof(fd_text[0]), "%d", result[1]);
	sp->argv[2] = fd_text[0];
	env = helper_environment(sp);
	if (env == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM,
				      "cannot start the download helper: out of memory");
		goto out;
	}

	/* An inherited SIGCHLD=SIG_IGN would reap the helper before waitpid sees its status. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	if (sigaction(SIGCHLD, NULL, &old_chld) == 0 && old_chld.sa_handler == SIG_IGN)
		restore_chld = sigaction(SIGCHLD, &dfl, NULL) == 0;

	cb_log(CB_LOG_DEBUG, "running %s %s", helper_path, sp->argv[3]);
	pid = fork();
	if (pid < 0) {
		status = cb_error_set(err, errno == ENOMEM ? CB_E_NOMEM : CB_E_IO, errno,
				      "cannot start the download helper: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		exec_helper(sp, env, result[1], parent);
	close(result[1]);
	result[1] = -1;
	if (request_fd >= 0) {
		close(request_fd);
		request_fd = -1;
	}

	len = read_record(result[0], buf, sizeof(buf), &overflow);
	/* Closed before the wait, so a helper that writes too much gets EPIPE, not a hang. */
	close(result[0]);
	result[0] = -1;
	while (waitpid(pid, &wstatus, 0) < 0) {
		if (errno != EINTR) {
			wstatus = 0;
			break;
		}
	}
	if (WIFSIGNALED(wstatus)) {
		int sig = WTERMSIG(wstatus);

		status = cb_error_set(err, CB_E_IO, 0,
				      "the download helper (%s) died: signal %d (%s)", helper_path,
				      sig, strsignal(sig));
		goto out;
	}
	if (len == 0) {
		int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;

		if (code == 2)
			status = cb_error_set(err, CB_E_CONFIG, 0,
					      "the download helper (%s) does not match this coldboot "
					      "binary; reinstall both from the same build",
					      helper_path);
		else
			status = cb_error_set(err, CB_E_IO, 0,
					      "the download helper (%s) exited (status %d) without a "
					      "result",
					      helper_path, code);
		goto out;
	}
	if (overflow || parse_record(buf, len, rec) != 0 ||
	    (rec->status == CB_OK &&
	     (rec->value_count != sp->want_values || rec->have_checksum != sp->want_checksum))) {
		status = cb_error_set(err, CB_E_CONFIG, 0,
				      "the download helper (%s) wrote a result this coldboot binary "
				      "cannot read; reinstall both from the same build",
				      helper_path);
		goto out;
	}
	if (rec->status != CB_OK) {
		status = cb_error_set(err, rec->status, rec->sys_errno, "%s", rec->message);
		goto out;
	}
out:
	if (env != environ)
		free(env);
	if (restore_chld)
		(void)sigaction(SIGCHLD, &old_chld, NULL);
	if (result[0] >= 0)
		close(result[0]);
	if (result[1] >= 0)
		close(result[1]);
	if (request_fd >= 0)
		close(request_fd);
	return status;
}

/*
 * The cache root of "<root>/staging/<digest>", the path cb_staging_create
 * returns, into root. Returns -1 when path has another shape.
 */
static int root_of_staging(const char *path, const struct cb_checksum *sum, char *root,
			   size_t root_size)
{
	size_t len = strlen(path);
	size_t tail = strlen("/staging/") + strlen(sum->hex);

	if (len <= tail || strncmp(path + len - tail, "/staging/", 9) != 0 ||
	    strcmp(path + len - strlen(sum->hex), sum->hex) != 0 || len - tail >= root_size)
		return -1;
	memcpy(root, path, len - tail);
	root[len - tail] = '\0';
	return 0;
}

static enum cb_status proxy_install(const struct cb_install_request *req,
				    struct cb_install_result *res, struct cb_error *err)
{
	struct spawn sp;
	struct cb_cold_record rec;
	char staging_fd[16];
	char checksum[CB_CHECKSUM_TEXT_MAX];
	char max_size[24];
	char budget[24];
	char deadline[24];
	char level[8];
	char root[PATH_MAX] = "";
	enum cb_status status;

	if (req->make_room != NULL &&
	    root_of_staging(req->staging_path, req->checksum, root, sizeof(root)) != 0)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "the staging directory %s is not in a cache's staging/ folder",
				    req->staging_path);
	snprintf(staging_fd, sizeof(staging_fd), "%d", req->staging_fd);
	cb_checksum_format(req->checksum, checksum, sizeof(checksum));
	snprintf(max_size, sizeof(max_size), "%" PRIu64, req->max_size_bytes);
	snprintf(budget, sizeof(budget), "%" PRIu64, req->memory_budget_bytes);
	snprintf(deadline, sizeof(deadline), "%" PRId64, req->deadline_ms);
	snprintf(level, sizeof(level), "%d", (int)req->log_level);

	memset(&sp, 0, sizeof(sp));
	sp.argv[1] = CB_COLD_PROTOCOL;
	sp.argv[3] = "install";
	sp.argv[4] = NULL; /* the request pipe's descriptor, filled by run_helper */
	sp.argv[5] = staging_fd;
	sp.argv[6] = req->staging_path;
	sp.argv[7] = checksum;
	sp.argv[8] = max_size;
	sp.argv[9] = deadline;
	sp.argv[10] = level;
	sp.argv[11] = root;
	sp.argv[12] = budget;
	sp.argv[13] = NULL;
	sp.pass_fds[0] = req->staging_fd;
	sp.pass_fds[1] = -1;
	sp.request = req->url;
	sp.request_arg = 4;
	sp.want_values = 7;
	sp.want_checksum = 0;
	sp.tune_heap = req->memory_budget_bytes == 0 ||
		       req->memory_budget_bytes >= CB_HELPER_TUNED_BUDGET_MIN;
	status = run_helper(&sp, &rec, err);
	if (status != CB_OK)
		return status;
	res->download_bytes = rec.values[0];
	res->unpacked_bytes = rec.values[1];
	res->files = rec.values[2];
	res->attempts = (uint32_t)rec.values[3];
	res->fetch_ms = (int64_t)rec.values[4];
	res->verify_ms = (int64_t)rec.values[5];
	res->unpack_ms = (int64_t)rec.values[6];
	return CB_OK;
}

static enum cb_status proxy_hash_file(const char *path, enum cb_hash_algo algo,
				      struct cb_checksum *out, struct cb_error *err)
{
	struct spawn sp;
	struct cb_cold_record rec;
	char level[8];
	char algo_text[8];
	enum cb_status status;

	snprintf(level, sizeof(level), "%d", (int)cb_log_get_level());
	snprintf(algo_text, sizeof(algo_text), "%d", (int)algo);
	memset(&sp, 0, sizeof(sp));
	sp.argv[1] = CB_COLD_PROTOCOL;
	sp.argv[3] = "hash";
	sp.argv[4] = level;
	sp.argv[5] = algo_text;
	sp.argv[6] = path;
	sp.argv[7] = NULL;
	sp.pass_fds[0] = -1;
	sp.pass_fds[1] = -1;
	sp.want_values = 0;
	sp.want_checksum = 1;
	status = run_helper(&sp, &rec, err);
	if (status != CB_OK)
		return status;
	*out = rec.checksum;
	return CB_OK;
}

static enum cb_status proxy_pack(const struct cb_pack_request *req, struct cb_pack_result *res,
				 struct cb_error *err)
{
	struct spawn sp;
	struct cb_cold_record rec;
	char level[8];
	enum cb_status status;

	snprintf(level, sizeof(level), "%d", (int)cb_log_get_level());
	memset(&sp, 0, sizeof(sp));
	sp.argv[1] = CB_COLD_PROTOCOL;
	sp.argv[3] = "pack";
	sp.argv[4] = level;
	sp.argv[5] = req->force_zip64 ? "1" : "0";
	sp.argv[6] = req->src_dir;
	sp.argv[7] = req->out_path;
	sp.argv[8] = NULL;
	sp.pass_fds[0] = -1;
	sp.pass_fds[1] = -1;
	sp.want_values = 6;
	sp.want_checksum = 1;
	status = run_helper(&sp, &rec, err);
	if (status != CB_OK)
		return status;
	res->files = rec.values[0];
	res->dirs = rec.values[1];
	res->symlinks = rec.values[2];
	res->input_bytes = rec.values[3];
	res->zip_bytes = rec.values[4];
	res->zip64 = rec.values[5] != 0;
	res->checksum = rec.checksum;
	return CB_OK;
}

static const struct cb_cold_ops proxy_ops = {
	.abi_version = CB_COLD_ABI_VERSION,
	.install = proxy_install,
	.hash_file = proxy_hash_file,
	.pack = proxy_pack,
};

/* Writes the directory of the running executable into dir. */
static int exe_dir(char *dir, size_t dir_size)
{
	ssize_t n = readlink("/proc/self/exe", dir, dir_size - 1);
	char *slash;

	if (n <= 0)
		return -1;
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	return 0;
}

/* Non-zero when path names an executable file; appends it to the list of places tried. */
static int try_path(const char *path, char *tried, size_t tried_size)
{
	size_t used = strlen(tried);

	snprintf(tried + used, tried_size - used, "%s%s", used > 0 ? ", " : "", path);
	if (access(path, X_OK) == 0 && strlen(path) < sizeof(helper_path)) {
		strcpy(helper_path, path);
		return 1;
	}
	cb_log(CB_LOG_DEBUG, "no download helper at %s: %s", path, strerror(errno));
	return 0;
}

enum cb_status cb_cold_load(const struct cb_cold_ops **ops, struct cb_error *err)
{
	char dir[PATH_MAX];
	char path[PATH_MAX + 64];
	char tried[3 * PATH_MAX] = "";
	const char *override = getenv("COLDBOOT_COLD_EXE");
	int found = 0;

	if (helper_path[0] != '\0') {
		*ops = &proxy_ops;
		return CB_OK;
	}
	if (override != NULL && override[0] != '\0') {
		found = try_path(override, tried, sizeof(tried));
	} else if (exe_dir(dir, sizeof(dir)) == 0) {
		snprintf(path, sizeof(path), "%s/%s", dir, CB_COLD_EXE_NAME);
		found = try_path(path, tried, sizeof(tried));
		if (!found) {
			snprintf(path, sizeof(path), "%s/../lib/coldboot/%s", dir, CB_COLD_EXE_NAME);
			found = try_path(path, tried, sizeof(tried));
		}
	}
	if (!found)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "cannot find the download helper %s (tried %s); install "
				    "coldboot with its lib/coldboot directory or set COLDBOOT_COLD_EXE",
				    CB_COLD_EXE_NAME, tried[0] != '\0' ? tried : "nothing");
	*ops = &proxy_ops;
	return CB_OK;
}
