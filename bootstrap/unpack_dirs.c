/*
 * The extractor's pass 4: every directory, named by an entry or implied by
 * a deeper name, planned in name order and created depth-first through
 * directory fds opened with O_NOFOLLOW, by this thread or, for many, by
 * several; each kept open in a table for the workers when the descriptor
 * limit allows.
 */
#include "unpack_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static enum cb_status add_dir(struct unpack_ctx *ctx, uint32_t parent, const char *comp,
			      size_t comp_len, const struct unpack_entry *e, uint32_t *id)
{
	struct unpack_dir *d;

	if (ctx->ndirs == ctx->dirs_cap) {
		size_t cap = ctx->dirs_cap ? ctx->dirs_cap * 2 : 64;
		struct unpack_dir *grown;

		if (cap > UINT32_MAX)
			return unpack_refuse_entry(ctx, e, "too many directories");
		grown = realloc(ctx->dirs, cap * sizeof(*grown));
		if (grown == NULL)
			return unpack_nomem(ctx);
		ctx->dirs = grown;
		ctx->dirs_cap = cap;
	}
	d = &ctx->dirs[ctx->ndirs];
	d->parent = parent;
	d->comp = comp;
	d->comp_len = comp_len;
	d->e = e;
	*id = (uint32_t)ctx->ndirs++;
	return CB_OK;
}

/* Whether any entry lies below the directory entry e. */
static bool has_children(const struct unpack_ctx *ctx, const struct unpack_entry *e)
{
	char key[UNPACK_PATH_MAX + 2];
	size_t i;

	memcpy(key, e->name, e->name_len);
	key[e->name_len] = '/';
	i = unpack_lower_bound(ctx, key, e->name_len + 1);
	return i < ctx->count && strncmp(ctx->by_name[i]->name, key, e->name_len + 1) == 0;
}

/*
 * Every directory, named or implied by a deeper name, gets an id, and every
 * file and symlink the id of its parent (0 is dest_fd). The walk goes in
 * name order, where everything below a directory is one run: ids then come
 * depth-first, a parent's below its children's. A directory entry with
 * entries below it is left to them, since siblings can sort between the two
 * ("a", "a.txt", "a/x"): it would be entered twice.
 */
enum cb_status unpack_plan_dirs(struct unpack_ctx *ctx)
{
	struct unpack_entry *const *v = ctx->by_name; /* sorted by name by check_tree */
	const char *comp[UNPACK_DEPTH_MAX];
	size_t comp_len[UNPACK_DEPTH_MAX];
	uint32_t ids[UNPACK_DEPTH_MAX];
	size_t depth = 0;
	uint32_t root = 0;
	enum cb_status st;

	st = add_dir(ctx, 0, "", 0, NULL, &root);
	if (st != CB_OK)
		return st;
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = v[i];
		const char *slash = strrchr(e->name, '/');
		size_t len = e->kind == UNPACK_DIR ? e->name_len :
			     slash != NULL         ? (size_t)(slash - e->name) :
						     0;
		size_t level = 0, start = 0;

		if (e->kind == UNPACK_DIR && has_children(ctx, e))
			continue;
		while (start < len) {
			const char *next = memchr(e->name + start, '/', len - start);
			size_t end = next ? (size_t)(next - e->name) : len;
			size_t clen = end - start;

			if (level >= depth || comp_len[level] != clen ||
			    memcmp(comp[level], e->name + start, clen) != 0) {
				/* A new directory: whatever was deeper on the stack is done. */
				assert(level < UNPACK_DEPTH_MAX);
				depth = level + 1;
				comp[level] = e->name + start;
				comp_len[level] = clen;
				st = add_dir(ctx, level ? ids[level - 1] : root, e->name + start,
					     clen, e, &ids[level]);
				if (st != CB_OK)
					return st;
			}
			level++;
			start = end + 1;
		}
		depth = level;
		e->dir_id = level ? ids[level - 1] : root;
	}
	return CB_OK;
}

void unpack_close_dir_table(struct unpack_ctx *ctx)
{
	if (ctx->dir_fds == NULL)
		return;
	for (size_t i = 1; i < ctx->ndirs; i++)
		if (ctx->dir_fds[i] >= 0)
			close(ctx->dir_fds[i]);
	free(ctx->dir_fds);
	ctx->dir_fds = NULL;
}

/*
 * Keeping every directory open needs a descriptor each: raise the soft
 * limit as far as that needs (put back by unpack_restore_fd_limit), or say no.
 */
bool unpack_room_for_dir_table(struct unpack_ctx *ctx, size_t workers)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)ctx->ndirs + (rlim_t)workers + UNPACK_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return false;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return true;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		return false;
	ctx->saved_nofile = rl;
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return false;
	ctx->nofile_raised = true;
	return true;
}

void unpack_restore_fd_limit(struct unpack_ctx *ctx)
{
	if (ctx->nofile_raised)
		setrlimit(RLIMIT_NOFILE, &ctx->saved_nofile);
	ctx->nofile_raised = false;
}

void cb_unpack_reserve_fds(void)
{
	struct rlimit rl, raised;
	rlim_t want = UNPACK_FD_TABLE_MAX;
	int fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	raised = rl;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		raised.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &raised) != 0)
			return;
	}
	/*
	 * The kernel grows the table to the next power of two holding the
	 * highest descriptor. F_DUPFD never replaces a descriptor already open.
	 */
	fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, (int)want - 1);
	if (fd >= 0)
		close(fd);
	if (raised.rlim_cur != rl.rlim_cur)
		setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * Creates one directory under parent (or finds it) and opens it, never
 * through a symlink; *made counts it when it is new. Any thread: the error
 * goes to err.
 */
static enum cb_status make_one_dir(const struct unpack_ctx *ctx, struct cb_error *err, int parent,
				   const struct unpack_dir *d, int *fd_out, uint64_t *made)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	char comp[UNPACK_NAME_MAX + 1];
	const char *dest = unpack_dest_shown(ctx);
	int fd;

	memcpy(comp, d->comp, d->comp_len);
	comp[d->comp_len] = '\0';
	if (mkdirat(parent, comp, 0755) == 0)
		(*made)++;
	else if (errno != EEXIST)
		return unpack_sys_fail_to(err, dest, d->e, errno, "create a directory");
	fd = openat(parent, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int saved = errno;

		if (saved == ELOOP || saved == ENOTDIR)
			return unpack_entry_error_to(err, CB_E_ZIP, 0, d->e,
						     "path component \"%s\" is not a directory",
						     unpack_show_name((const unsigned char *)comp,
								      d->comp_len, shown,
								      sizeof(shown)));
		return unpack_sys_fail_to(err, dest, d->e, saved, "open a directory");
	}
	if ((ctx->umask_bits & 0755) != 0 && fchmod(fd, 0755) != 0) {
		int saved = errno;

		close(fd);
		return unpack_sys_fail_to(err, dest, d->e, saved, "set a directory's mode");
	}
	*fd_out = fd;
	return CB_OK;
}

/*
 * Creates every directory in id order, walking down and up a stack of open
 * parents. With a table, every directory stays open for the workers (and
 * *out_of_fds says when the table ran out of descriptors after all).
 */
enum cb_status unpack_make_dirs(struct unpack_ctx *ctx, bool *out_of_fds)
{
	uint32_t stack_id[UNPACK_DEPTH_MAX + 1];
	int stack_fd[UNPACK_DEPTH_MAX + 1];
	size_t top = 0;
	enum cb_status st = CB_OK;

	*out_of_fds = false;
	stack_id[0] = 0;
	stack_fd[0] = ctx->opts->dest_fd;
	for (size_t i = 1; i < ctx->ndirs; i++) {
		const struct unpack_dir *d = &ctx->dirs[i];
		int fd = -1;

		/* Ids are depth-first: the parent is on the stack. */
		while (stack_id[top] != d->parent) {
			assert(top > 0);
			if (ctx->dir_fds == NULL)
				close(stack_fd[top]);
			top--;
		}
		st = make_one_dir(ctx, ctx->err, stack_fd[top], d, &fd, &ctx->res->dirs);
		if (st != CB_OK) {
			*out_of_fds = ctx->dir_fds != NULL && (ctx->err->sys_errno == EMFILE ||
							       ctx->err->sys_errno == ENFILE);
			break;
		}
		if (ctx->dir_fds != NULL)
			ctx->dir_fds[i] = fd;
		assert(top < UNPACK_DEPTH_MAX);
		top++;
		stack_id[top] = (uint32_t)i;
		stack_fd[top] = fd;
	}
	if (ctx->dir_fds == NULL)
		for (; top > 0; top--)
			close(stack_fd[top]);
	return st;
}

/*
 * With a table of directories and more than one thread: the ids cut into one
 * stretch per thread, each made in id order, with no wait between threads.
 * Ids are depth-first and everything below a directory is one run of them,
 * so a directory's parent is either earlier in its own stretch or an
 * ancestor of the stretch's first directory. Those ancestors (a path per
 * stretch) are made first, by the calling thread; the threads then share
 * only them, and creations in one directory queue on its lock. 10,021
 * directories on tmpfs: 75 ms in one thread.
 */
struct dir_maker {
	const struct unpack_ctx *ctx;
	atomic_bool *stop; /* a thread failed: the others need not go on */
	size_t first, end; /* its stretch of ids */
	struct cb_error err;
	enum cb_status st;
	uint64_t made;
	pthread_t thread;
	bool started;
};

static void *dir_maker_run(void *arg)
{
	struct dir_maker *m = arg;
	const struct unpack_ctx *ctx = m->ctx;

	for (size_t i = m->first; i < m->end; i++) {
		const struct unpack_dir *d = &ctx->dirs[i];
		int fd = -1;

		if (ctx->dir_fds[i] >= 0)
			continue; /* on another stretch's path: made already */
		if (atomic_load_explicit(m->stop, memory_order_relaxed))
			break;
		m->st = make_one_dir(ctx, &m->err, ctx->dir_fds[d->parent], d, &fd, &m->made);
		if (m->st != CB_OK) {
			atomic_store_explicit(m->stop, true, memory_order_relaxed);
			break;
		}
		ctx->dir_fds[i] = fd;
	}
	return NULL;
}

/* Makes, top down, the ancestors of directory id that are not made yet. */
static enum cb_status make_path_to(const struct unpack_ctx *ctx, size_t id, uint64_t *made)
{
	uint32_t path[UNPACK_DEPTH_MAX];
	size_t n = 0;

	for (uint32_t a = ctx->dirs[id].parent; a != 0 && ctx->dir_fds[a] < 0;
	     a = ctx->dirs[a].parent) {
		assert(n < UNPACK_DEPTH_MAX);
		path[n++] = a;
	}
	while (n > 0) {
		const struct unpack_dir *d = &ctx->dirs[path[--n]];
		int fd = -1;
		enum cb_status st =
			make_one_dir(ctx, ctx->err, ctx->dir_fds[d->parent], d, &fd, made);

		if (st != CB_OK)
			return st;
		ctx->dir_fds[path[n]] = fd;
	}
	return CB_OK;
}

/* unpack_make_dirs by nthreads threads, this one included (it does the stretch of any that cannot start). */
enum cb_status unpack_make_dirs_parallel(struct unpack_ctx *ctx, size_t nthreads, bool *out_of_fds)
{
	struct dir_maker m[UNPACK_WORKERS_MAX];
	atomic_bool stop = false;
	size_t n = ctx->ndirs - 1; /* ids 1 .. ndirs - 1; 0 is dest_fd */
	uint64_t made = 0;
	enum cb_status st = CB_OK;

	if (nthreads > UNPACK_WORKERS_MAX)
		nthreads = UNPACK_WORKERS_MAX;
	for (size_t i = 0; i < nthreads; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].ctx = ctx;
		m[i].stop = &stop;
		m[i].first = 1 + n * i / nthreads;
		m[i].end = 1 + n * (i + 1) / nthreads;
		m[i].st = CB_OK;
		cb_error_init(&m[i].err);
		if (st == CB_OK && i > 0 && m[i].first < m[i].end)
			st = make_path_to(ctx, m[i].first, &made);
	}
	if (st == CB_OK) {
		for (size_t i = 1; i < nthreads; i++)
			m[i].started = pthread_create(&m[i].thread, NULL, dir_maker_run, &m[i]) == 0;
		for (size_t i = 0; i < nthreads; i++)
			if (!m[i].started)
				dir_maker_run(&m[i]);
		for (size_t i = 0; i < nthreads; i++) {
			if (m[i].started)
				pthread_join(m[i].thread, NULL);
			made += m[i].made;
			if (st == CB_OK && m[i].st != CB_OK) {
				st = m[i].st;
				*ctx->err = m[i].err;
			}
		}
	}
	ctx->res->dirs += made;
	*out_of_fds =
		st != CB_OK && (ctx->err->sys_errno == EMFILE || ctx->err->sys_errno == ENFILE);
	return st;
}
