/*
 * Removing a directory tree without following symlinks and without holding one
 * descriptor per level, so a hostile zip's 2,000-deep tree cannot exhaust the
 * descriptor table. Only used on trees we own, under the install lock.
 */
#define _DEFAULT_SOURCE /* d_type, fdopendir */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

struct name_stack {
	char **names;
	size_t count;
	size_t capacity;
};

static int stack_push(struct name_stack *stack, const char *name)
{
	if (stack->count == stack->capacity) {
		size_t capacity = stack->capacity != 0 ? 2 * stack->capacity : 16;
		char **names = realloc(stack->names, capacity * sizeof(*names));

		if (names == NULL)
			return -1;
		stack->names = names;
		stack->capacity = capacity;
	}
	stack->names[stack->count] = strdup(name);
	if (stack->names[stack->count] == NULL)
		return -1;
	stack->count++;
	return 0;
}

/*
 * Unlinks every non-directory in fd and copies the name of one remaining
 * subdirectory into subdir (empty when none is left).
 */
static int clear_files(int fd, char *subdir, size_t subdir_size)
{
	int dup_fd = dup(fd);
	DIR *dir;
	struct dirent *entry;
	int result = 0;

	subdir[0] = '\0';
	if (dup_fd < 0)
		return -1;
	dir = fdopendir(dup_fd);
	if (dir == NULL) {
		close(dup_fd);
		return -1;
	}
	rewinddir(dir);
	while ((entry = readdir(dir)) != NULL) {
		int is_dir;

		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		is_dir = entry->d_type == DT_DIR;
		if (entry->d_type == DT_UNKNOWN) {
			struct stat st;

			if (fstatat(fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
				continue;
			is_dir = S_ISDIR(st.st_mode);
		}
		if (is_dir) {
			if (subdir[0] == '\0' && strlen(entry->d_name) < subdir_size)
				strcpy(subdir, entry->d_name);
		} else if (unlinkat(fd, entry->d_name, 0) != 0 && errno != ENOENT) {
			result = -1;
			break;
		}
	}
	closedir(dir);
	return result;
}

/*
 * Empties the tree whose top directory is open as fd, walking down and back up
 * with one descriptor at a time; fd is closed, whatever happens.
 */
static enum cb_status empty_tree(int fd, const char *name, struct cb_error *err)
{
	struct name_stack stack = {NULL, 0, 0};
	char subdir[NAME_MAX + 1];
	enum cb_status status = CB_OK;

	for (;;) {
		if (clear_files(fd, subdir, sizeof(subdir)) != 0) {
			status = cb_error_set(err, CB_E_IO, errno, "cannot empty %s: %s", name,
					      strerror(errno));
			goto out;
		}
		if (subdir[0] != '\0') {
			int child = openat(fd, subdir, DIR_FLAGS);

			if (child < 0 || stack_push(&stack, subdir) != 0) {
				status = cb_error_set(err, child < 0 ? CB_E_IO : CB_E_NOMEM, errno,
						      "cannot descend into %s/%s: %s", name, subdir,
						      strerror(errno));
				if (child >= 0)
					close(child);
				goto out;
			}
			close(fd);
			fd = child;
			continue;
		}
		if (stack.count == 0)
			break;
		/* This level is empty: climb back and remove it. */
		{
			int parent = openat(fd, "..", DIR_FLAGS);
			char *child_name = stack.names[--stack.count];
			int rc;

			if (parent < 0) {
				free(child_name);
				status = cb_error_set(err, CB_E_IO, errno,
						      "cannot climb out of %s: %s", name,
						      strerror(errno));
				goto out;
			}
			close(fd);
			fd = parent;
			rc = unlinkat(fd, child_name, AT_REMOVEDIR);
			free(child_name);
			if (rc != 0 && errno != ENOENT) {
				status = cb_error_set(err, CB_E_IO, errno,
						      "cannot remove under %s: %s", name,
						      strerror(errno));
				goto out;
			}
		}
	}
out:
	close(fd);
	while (stack.count > 0)
		free(stack.names[--stack.count]);
	free(stack.names);
	return status;
}

enum cb_status cb_rmtree_contents(int dir_fd, const char *name, struct cb_error *err)
{
	int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot empty %s: %s", name,
				    strerror(errno));
	return empty_tree(fd, name, err);
}

enum cb_status cb_rmtree_at(int dir_fd, const char *name, struct cb_error *err)
{
	enum cb_status status;
	int fd = openat(dir_fd, name, DIR_FLAGS);

	if (fd < 0) {
		if (errno == ENOENT)
			return CB_OK;
		if ((errno == ENOTDIR || errno == ELOOP) && unlinkat(dir_fd, name, 0) == 0)
			return CB_OK;
		return cb_error_set(err, CB_E_IO, errno, "cannot remove %s: %s", name,
				    strerror(errno));
	}
	status = empty_tree(fd, name, err);
	if (status == CB_OK && unlinkat(dir_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		status = cb_error_set(err, CB_E_IO, errno, "cannot remove %s: %s", name,
				      strerror(errno));
	return status;
}
