#include "err.h"

const char *m2z_strerror(int err)
{
	switch (err) {
	case M2Z_OK: return "success";
	case M2Z_ERR_NOMEM: return "out of memory";
	case M2Z_ERR_IO: return "I/O error";
	case M2Z_ERR_CONFIG: return "invalid configuration";
	case M2Z_ERR_PARSE: return "malformed input";
	case M2Z_ERR_TLS: return "TLS error";
	case M2Z_ERR_NET: return "network error";
	case M2Z_ERR_HTTP: return "HTTP error";
	case M2Z_ERR_AUTH: return "authentication error";
	case M2Z_ERR_FULL: return "full";
	case M2Z_ERR_CORRUPT: return "corrupt data";
	case M2Z_ERR_TOO_BIG: return "too big";
	case M2Z_ERR_NOT_FOUND: return "not found";
	case M2Z_ERR_INVAL: return "invalid argument";
	case M2Z_ERR_TIMEOUT: return "timed out";
	case M2Z_ERR_CLOSED: return "closed";
	case M2Z_ERR_AGAIN: return "try again";
	}
	return "unknown error";
}
