/* Internal interface between the translation units of alipay.core.
 * Nothing here is exported: the shared object is built with
 * -fvisibility=hidden and only luaopen_alipay_core is public. */
#ifndef ALIPAY_CORE_H
#define ALIPAY_CORE_H

#include <stddef.h>
#include "compat.h"

#define AP_PRIVATE_KEY_MT "alipay.private_key"
#define AP_PUBLIC_KEY_MT "alipay.public_key"
#define AP_HTTP_MT "alipay.http"

/* Each unit adds its functions to the module table on top of the stack;
 * only core.c calls these. */
void ap_register_keys(lua_State *L);
void ap_register_sign(lua_State *L);
void ap_register_extract(lua_State *L);
void ap_register_cert(lua_State *L);
void ap_register_aes(lua_State *L);
void ap_register_codec(lua_State *L);
void ap_register_http(lua_State *L);
void ap_register_charset(lua_State *L);
void ap_register_clock(lua_State *L);
void ap_register_signal(lua_State *L);

/* Defined in signal.c: the record of the signals core.signals_catch
 * catches, for the waits that must end when one comes (http.c).
 * ap_signal_count: signals caught since the handlers were installed (0 when
 * none, or none is installed). ap_signal_wake_fd: a descriptor that becomes
 * readable when a signal is caught (poll it with the sockets), -1 before the
 * first signals_catch; ap_signal_drain_wake empties it, so that it wakes a
 * poll again only at the next signal. */
int ap_signal_count(void);
int ap_signal_wake_fd(void);
void ap_signal_drain_wake(void);

/* ap_push_error, ap_push_ssl_error: defined in error.c. */
#include "error.h"

/* Defined in class.c. Registers the metatable `name` of a userdata type: the
 * metamethods in meta and a table of the methods as its __index. Leaves the
 * stack as it was. */
void ap_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/* Defined in codec.c. Byte order of two byte strings (memcmp over the common
 * length, then the shorter first): the order of the string to sign and of
 * sorted JSON keys. */
int ap_bytes_cmp(const char *a, size_t a_len, const char *b, size_t b_len);

/* Defined in codec.c. Base64 (standard alphabet, padded). Decoding skips ASCII whitespace and
 * rejects anything else outside the alphabet or misplaced padding.
 * ap_b64_decode writes at most ap_b64_decoded_max(n) bytes to out and
 * returns the length, or -1 when the text is not base64. */
size_t ap_b64_encoded_len(size_t n);
void ap_b64_encode(const unsigned char *in, size_t n, char *out);
size_t ap_b64_decoded_max(size_t n);
long ap_b64_decode(const char *in, size_t n, unsigned char *out);
/* Pushes the base64 of in onto the Lua stack. */
void ap_push_b64(lua_State *L, const unsigned char *in, size_t n);

/* PEM framing, done by hand so that CRLF, any line wrapping and one long
 * line all work. Finds the next "-----BEGIN <label>-----" block at or
 * after *pos. On success fills label (NUL-terminated, truncated to
 * label_cap), the base64 body span, moves *pos past the END line and
 * returns 1; returns 0 when there is no further block and -1 when a
 * block is opened but never closed (a truncated PEM). */
int ap_pem_next(const char *text, size_t len, size_t *pos, char *label, size_t label_cap,
                const char **body, size_t *body_len);

/* Decodes base64 (PEM body or bare) into a Lua-owned scratch buffer pushed
 * on the stack as a userdata; returns its bytes and length, or NULL (and
 * pushes nothing) if not base64. */
unsigned char *ap_b64_decode_scratch(lua_State *L, const char *in, size_t n, size_t *out_len);

#endif
