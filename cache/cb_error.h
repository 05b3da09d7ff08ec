/* Status codes and the error object carried by every call that can fail. */
#ifndef CB_ERROR_H
#define CB_ERROR_H

#include <stddef.h>

/*
 * Every call that can fail returns one of these and fills a struct cb_error.
 * bootstrap/main.c maps them to exit codes (see cb_status_exit_code) and is the
 * only place that prints them.
 */
enum cb_status {
	CB_OK = 0,
	CB_E_USAGE,        /* bad command line: exit 2 */
	CB_E_CONFIG,       /* bad or missing configuration: exit 3 */
	CB_E_IO,           /* the cache directory cannot be used: exit 3 */
	CB_E_NOMEM,        /* out of memory: exit 7 */
	CB_E_DOWNLOAD,     /* the download failed: exit 4 */
	CB_E_CHECKSUM,     /* the bytes do not match the pinned checksum: exit 5 */
	CB_E_ZIP,          /* unsafe or broken zip: exit 6 */
	CB_E_SPACE,        /* not enough space in the cache: exit 7 */
	CB_E_LOCK_TIMEOUT, /* the install lock was not released in time: exit 8 */
	CB_E_EXEC,         /* the handler exists but cannot be run: exit 126 */
	CB_E_NOT_FOUND,    /* the handler was not found: exit 127 */
};

#define CB_ERROR_MESSAGE_MAX 512

struct cb_error {
	enum cb_status code;
	int sys_errno; /* errno saved at the failing call, 0 when none */
	char message[CB_ERROR_MESSAGE_MAX];
};

/* Resets an error object to "no error". */
void cb_error_init(struct cb_error *err);

/*
 * Records a failure: code, the saved errno (0 when none) and one human
 * sentence. Returns code so callers can write `return cb_error_set(...)`.
 * err may be NULL, in which case only the code is returned.
 */
enum cb_status cb_error_set(struct cb_error *err, enum cb_status code, int sys_errno,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The process exit status for a status code (DESIGN.md, "Exit status"). */
int cb_status_exit_code(enum cb_status code);

/* A short stable name for a status ("download", "checksum", ...), for stats records. */
const char *cb_status_name(enum cb_status code);

#endif
