/* Loads the cold module on a cache miss, so a warm start never maps libcurl or libzip. */
#include "cold.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct cb_cold_ops *loaded_ops;

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

static void *try_open(const char *path, char *tried, size_t tried_size)
{
	size_t used = strlen(tried);
	void *handle;

	snprintf(tried + used, tried_size - used, "%s%s", used > 0 ? ", " : "", path);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL)
		cb_log(CB_LOG_DEBUG, "cannot load %s: %s", path, dlerror());
	return handle;
}

enum cb_status cb_cold_load(const struct cb_cold_ops **ops, struct cb_error *err)
{
	char dir[PATH_MAX];
	char path[PATH_MAX + 64];
	char tried[3 * PATH_MAX] = "";
	const char *override = getenv("COLDBOOT_COLD_MODULE");
	const struct cb_cold_ops *table;
	void *handle = NULL;

	if (loaded_ops != NULL) {
		*ops = loaded_ops;
		return CB_OK;
	}
	if (override != NULL && override[0] != '\0') {
		handle = try_open(override, tried, sizeof(tried));
	} else if (exe_dir(dir, sizeof(dir)) == 0) {
		snprintf(path, sizeof(path), "%s/%s", dir, CB_COLD_MODULE_NAME);
		handle = try_open(path, tried, sizeof(tried));
		if (handle == NULL) {
			snprintf(path, sizeof(path), "%s/../lib/coldboot/%s", dir,
				 CB_COLD_MODULE_NAME);
			handle = try_open(path, tried, sizeof(tried));
		}
	}
	if (handle == NULL)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "cannot load the download module (tried %s); install "
				    "coldboot with its lib/coldboot directory or set COLDBOOT_COLD_MODULE",
				    tried[0] != '\0' ? tried : "nothing");
	table = dlsym(handle, CB_COLD_SYMBOL);
	if (table == NULL || table->abi_version != CB_COLD_ABI_VERSION) {
		dlclose(handle);
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "the download module (%s) does not match this coldboot binary; "
				    "reinstall both from the same build",
				    tried);
	}
	loaded_ops = table;
	*ops = table;
	return CB_OK;
}
