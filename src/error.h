/* The failure returns every unit of alipay.core shares. They live in their
 * own unit (error.c), below the others, so that no unit calls back into
 * core.c, which only assembles the module (spec/unit/09-c_units_spec.lua). */
#ifndef ALIPAY_ERROR_H
#define ALIPAY_ERROR_H

#include "compat.h"

/* Failure return for an OpenSSL call: pushes nil and "what: reason" (the
 * reason string from the OpenSSL queue, never data), clears the queue,
 * returns 2. */
int ap_push_ssl_error(lua_State *L, const char *what);
/* Pushes nil and a formatted message, clears the OpenSSL queue, returns 2. */
int ap_push_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
