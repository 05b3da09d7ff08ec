#define _DEFAULT_SOURCE /* d_type in the site-packages scan */
#include "run_handler.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Sets name to "dirs:old" (or "dirs" when unset or empty; fallback when unset). */
static int prefix_env(const char *name, const char *dirs, const char *fallback)
{
	const char *old = getenv(name);
	char *value;
	size_t size;
	int rc;

	if (dirs[0] == '\0')
		return 0;
	if (old == NULL || old[0] == '\0')
		old = fallback;
	size = strlen(dirs) + 1 + (old != NULL ? strlen(old) : 0) + 1;
	value = malloc(size);
	if (value == NULL)
		return -1;
	snprintf(value, size, "%s%s%s", dirs, old != NULL ? ":" : "", old != NULL ? old : "");
	rc = setenv(name, value, 1);
	free(value);
	return rc;
}

/* Appends bundle_dir/sub to list (colon-separated) when it is a directory. */
static void add_if_dir(char *list, size_t list_size, const char *bundle_dir, const char *sub)
{
	char path[PATH_MAX];
	size_t used = strlen(list);

	if (snprintf(path, sizeof(path), "%s/%s", bundle_dir, sub) >= (int)sizeof(path) ||
	    !is_dir(path))
		return;
	if (used + 1 + strlen(path) + 1 > list_size)
		return;
	snprintf(list + used, list_size - used, "%s%s", used > 0 ? ":" : "", path);
}

/* Lambda layers put packages in python/ and in python/lib/python3.X/site-packages/. */
static void add_site_packages(char *list, size_t list_size, const char *bundle_dir)
{
	char lib[PATH_MAX];
	struct dirent *entry;
	DIR *dir;

	snprintf(lib, sizeof(lib), "%s/python/lib", bundle_dir);
	dir = opendir(lib);
	if (dir == NULL)
		return;
	while ((entry = readdir(dir)) != NULL) {
		char sub[NAME_MAX + 64];

		if (strncmp(entry->d_name, "python", 6) != 0)
			continue;
		snprintf(sub, sizeof(sub), "python/lib/%s/site-packages", entry->d_name);
		add_if_dir(list, list_size, bundle_dir, sub);
	}
	closedir(dir);
}

enum cb_status cb_run_handler_set_env(const char *bundle_dir, struct cb_error *err)
{
	char list[4 * PATH_MAX];
	int rc = 0;

	list[0] = '\0';
	add_if_dir(list, sizeof(list), bundle_dir, "bin");
	rc |= prefix_env("PATH", list, "/usr/local/bin:/usr/bin:/bin");
	list[0] = '\0';
	add_if_dir(list, sizeof(list), bundle_dir, "lib");
	rc |= prefix_env("LD_LIBRARY_PATH", list, NULL);
	list[0] = '\0';
	add_if_dir(list, sizeof(list), bundle_dir, "python");
	add_site_packages(list, sizeof(list), bundle_dir);
	rc |= prefix_env("PYTHONPATH", list, NULL);
	list[0] = '\0';
	add_if_dir(list, sizeof(list), bundle_dir, "nodejs/node_modules");
	rc |= prefix_env("NODE_PATH", list, NULL);
	rc |= setenv("COLDBOOT_BUNDLE", bundle_dir, 1);
	if (rc != 0)
		return cb_error_set(err, CB_E_NOMEM, errno,
				    "cannot set the handler's environment: %s", strerror(errno));
	return CB_OK;
}

enum cb_status cb_run_handler(const char *bundle_dir, char **args, struct cb_error *err)
{
	enum cb_status status = cb_run_handler_set_env(bundle_dir, err);
	int e;

	if (status != CB_OK)
		return status;
	/* stdio may hold buffered output of ours; the handler must not repeat or lose it. */
	fflush(NULL);
	execvp(args[0], args);
	e = errno;
	if (e == ENOENT || e == ENOTDIR)
		return cb_error_set(err, CB_E_NOT_FOUND, e,
				    "cannot run handler %s: command not found (PATH starts with the "
				    "bundle's bin/)",
				    args[0]);
	return cb_error_set(err, CB_E_EXEC, e, "cannot run handler %s: %s", args[0], strerror(e));
}
