#include "cb_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cb_error_init(struct cb_error *err)
{
	err->code = CB_OK;
	err->sys_errno = 0;
	err->message[0] = '\0';
}

enum cb_status cb_error_set(struct cb_error *err, enum cb_status code, int sys_errno,
			    const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	err->sys_errno = sys_errno;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return code;
}

int cb_status_exit_code(enum cb_status code)
{
	switch (code) {
	case CB_OK:
		return 0;
	case CB_E_USAGE:
		return 2;
	case CB_E_CONFIG:
	case CB_E_IO:
		return 3;
	case CB_E_DOWNLOAD:
		return 4;
	case CB_E_CHECKSUM:
		return 5;
	case CB_E_ZIP:
		return 6;
	case CB_E_NOMEM:
	case CB_E_SPACE:
		return 7;
	case CB_E_LOCK_TIMEOUT:
		return 8;
	case CB_E_EXEC:
		return 126;
	case CB_E_NOT_FOUND:
		return 127;
	}
	return 3;
}

const char *cb_status_name(enum cb_status code)
{
	switch (code) {
	case CB_OK:
		return "ok";
	case CB_E_USAGE:
		return "usage";
	case CB_E_CONFIG:
		return "config";
	case CB_E_IO:
		return "io";
	case CB_E_NOMEM:
		return "nomem";
	case CB_E_DOWNLOAD:
		return "download";
	case CB_E_CHECKSUM:
		return "checksum";
	case CB_E_ZIP:
		return "zip";
	case CB_E_SPACE:
		return "space";
	case CB_E_LOCK_TIMEOUT:
		return "lock_timeout";
	case CB_E_EXEC:
		return "exec";
	case CB_E_NOT_FOUND:
		return "not_found";
	}
	return "unknown";
}
