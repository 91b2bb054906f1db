/* RSA keys as userdata: parsed once, with prepared signing/verifying
 * contexts, so a call costs one digest and one RSA operation and never a
 * PEM parse. Formats are detected, not asked for (docs/protocol.md §1.4). */
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "alipay.h"

enum { ALG_RSA2, ALG_RSA, ALG_COUNT };
static const char *const ALG_NAMES[] = {"RSA2", "RSA", NULL};
static const char *const ALG_DIGESTS[] = {"SHA256", "SHA1"};

#define MIN_BITS 1024
#define MAX_BITS 16384
#define MAX_SIG_BYTES (MAX_BITS / 8)

typedef struct {
  EVP_PKEY *pkey;
  EVP_MD *md[ALG_COUNT];         /* fetched once, on first use */
  EVP_PKEY_CTX *ctx[ALG_COUNT];  /* sign or verify context, initialised once */
  EVP_MD_CTX *md_ctx;            /* reused for every digest: no allocation per call */
  const char *format;            /* "PKCS#1", "PKCS#8", "SPKI", "X.509 certificate" */
  int is_private;
} ap_key;

static void key_release(ap_key *k) {
  EVP_MD_CTX_free(k->md_ctx);
  k->md_ctx = NULL;
  for (int i = 0; i < ALG_COUNT; i++) {
    EVP_PKEY_CTX_free(k->ctx[i]);
    EVP_MD_free(k->md[i]);
    k->ctx[i] = NULL;
    k->md[i] = NULL;
  }
  EVP_PKEY_free(k->pkey);
  k->pkey = NULL;
}

static ap_key *check_key(lua_State *L, int idx) {
  ap_key *k = luaL_testudata(L, idx, AP_PRIVATE_KEY_MT);
  if (!k) k = luaL_testudata(L, idx, AP_PUBLIC_KEY_MT);
  if (!k) luaL_argerror(L, idx, "expected an alipay key");
  if (!k->pkey) luaL_error(L, "the key has been closed");
  return k;
}

/* ---- parsing ---- */

/* Only the parse outcome is reported; the DER is wiped by the caller. */
typedef struct {
  EVP_PKEY *pkey;
  const char *format;
  const char *error; /* static text, never derived from the input */
} parsed;

static EVP_PKEY *der_pkcs8(const unsigned char *der, size_t n) {
  const unsigned char *p = der;
  PKCS8_PRIV_KEY_INFO *info = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)n);
  if (!info) return NULL;
  EVP_PKEY *pkey = p == der + n ? EVP_PKCS82PKEY(info) : NULL;
  PKCS8_PRIV_KEY_INFO_free(info);
  return pkey;
}

static EVP_PKEY *der_pkcs1_private(const unsigned char *der, size_t n) {
  const unsigned char *p = der;
  EVP_PKEY *pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)n);
  if (pkey && p != der + n) { EVP_PKEY_free(pkey); pkey = NULL; }
  return pkey;
}

static EVP_PKEY *der_spki(const unsigned char *der, size_t n) {
  const unsigned char *p = der;
  EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)n);
  if (pkey && p != der + n) { EVP_PKEY_free(pkey); pkey = NULL; }
  return pkey;
}

static EVP_PKEY *der_pkcs1_public(const unsigned char *der, size_t n) {
  const unsigned char *p = der;
  EVP_PKEY *pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)n);
  if (pkey && p != der + n) { EVP_PKEY_free(pkey); pkey = NULL; }
  return pkey;
}

static EVP_PKEY *der_certificate(const unsigned char *der, size_t n) {
  const unsigned char *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)n);
  if (!x) return NULL;
  EVP_PKEY *pkey = X509_get_pubkey(x);
  X509_free(x);
  return pkey;
}

static int looks_private(const unsigned char *der, size_t n) {
  EVP_PKEY *k = der_pkcs8(der, n);
  if (!k) k = der_pkcs1_private(der, n);
  EVP_PKEY_free(k);
  return k != NULL;
}

static int looks_public(const unsigned char *der, size_t n) {
  EVP_PKEY *k = der_spki(der, n);
  if (!k) k = der_certificate(der, n);
  if (!k) k = der_pkcs1_public(der, n);
  EVP_PKEY_free(k);
  return k != NULL;
}

static void parse_private_der(parsed *r, const char *label, const unsigned char *der, size_t n) {
  if (!label || strcmp(label, "PRIVATE KEY") == 0) {
    if ((r->pkey = der_pkcs8(der, n))) { r->format = "PKCS#8"; return; }
  }
  if (!label || strcmp(label, "RSA PRIVATE KEY") == 0) {
    if ((r->pkey = der_pkcs1_private(der, n))) { r->format = "PKCS#1"; return; }
  }
  if (!label && looks_public(der, n))
    r->error = "this is a public key or certificate, not a private key";
  else if (label)
    r->error = "the PEM body is not a valid key of the kind its header names";
  else
    r->error = "base64 decodes to neither a PKCS#1 nor a PKCS#8 RSA private key";
}

static void parse_public_der(parsed *r, const char *label, const unsigned char *der, size_t n) {
  if (!label || strcmp(label, "PUBLIC KEY") == 0) {
    if ((r->pkey = der_spki(der, n))) { r->format = "SPKI"; return; }
  }
  if (!label || strcmp(label, "CERTIFICATE") == 0) {
    if ((r->pkey = der_certificate(der, n))) { r->format = "X.509 certificate"; return; }
  }
  if (!label || strcmp(label, "RSA PUBLIC KEY") == 0) {
    if ((r->pkey = der_pkcs1_public(der, n))) { r->format = "PKCS#1"; return; }
  }
  if (!label && looks_private(der, n))
    r->error = "this is a private key; give the public key (keep the private one secret)";
  else if (label)
    r->error = "the PEM body is not a valid key of the kind its header names";
  else
    r->error = "base64 decodes to neither an SPKI public key nor a certificate";
}

/* Sorts a PEM label into: ours (1), the other kind of key (-1 with an
 * error), or unknown/unsupported (-1 with an error). */
static int check_label(parsed *r, const char *label, int want_private) {
  static const char *const priv[] = {"PRIVATE KEY", "RSA PRIVATE KEY", NULL};
  static const char *const pub[] = {"PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", NULL};
  const char *const *mine = want_private ? priv : pub;
  const char *const *theirs = want_private ? pub : priv;
  for (int i = 0; mine[i]; i++)
    if (strcmp(label, mine[i]) == 0) return 1;
  for (int i = 0; theirs[i]; i++)
    if (strcmp(label, theirs[i]) == 0) {
      r->error = want_private
                     ? "this is a public key or certificate, not a private key"
                     : "this is a private key; give the public key (keep the private one secret)";
      return -1;
    }
  if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0)
    r->error = "encrypted keys are not supported; decrypt it first (openssl pkey -in FILE)";
  else if (strcmp(label, "EC PRIVATE KEY") == 0 || strcmp(label, "DSA PRIVATE KEY") == 0)
    r->error = "not an RSA key; Alipay signs with RSA";
  else
    r->error = "unexpected PEM block; expected an RSA key";
  return -1;
}

/* Parses text into r. Pushes (and leaves) one scratch userdata holding the
 * DER, which is wiped before returning. */
static void parse_key(lua_State *L, const char *text, size_t len, int want_private, parsed *r) {
  char label[64];
  const char *body;
  size_t body_len, pos = 0, der_len;
  int found = ap_pem_next(text, len, &pos, label, sizeof label, &body, &body_len);
  memset(r, 0, sizeof *r);
  if (found < 0) {
    r->error = "truncated PEM (no matching END line)";
    lua_pushnil(L);
    return;
  }
  if (found > 0) {
    if (check_label(r, label, want_private) < 0) { lua_pushnil(L); return; }
    if (memchr(body, ':', body_len)) { /* RFC 1421 headers: Proc-Type, DEK-Info */
      r->error = "encrypted keys are not supported; decrypt it first (openssl pkey -in FILE)";
      lua_pushnil(L);
      return;
    }
  } else {
    body = text;
    body_len = len;
  }
  unsigned char *der = ap_b64_decode_scratch(L, body, body_len, &der_len);
  if (!der) {
    r->error = found ? "the PEM body is not valid base64" : "not a PEM or base64 RSA key";
    lua_pushnil(L);
    return;
  }
  if (der_len == 0) {
    r->error = "the key text is empty";
    return;
  }
  if (want_private) parse_private_der(r, found ? label : NULL, der, der_len);
  else parse_public_der(r, found ? label : NULL, der, der_len);
  OPENSSL_cleanse(der, der_len);
}

/* The CRT components agree with each other: n = p*q, dP = d mod (p-1),
 * dQ = d mod (q-1), qInv*q = 1 mod p. OpenSSL silently falls back to the
 * slow non-CRT path when they do not, so a damaged component would
 * otherwise go unnoticed. Bignum arithmetic only: microseconds, where
 * EVP_PKEY_pairwise_check also tests the primes and costs ~70 ms. */
static int crt_consistent(EVP_PKEY *pkey) {
  static const char *const names[] = {OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_D,
                                      OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,
                                      OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
                                      OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  enum { N, D, P, Q, DP, DQ, QINV, COUNT };
  BIGNUM *v[COUNT] = {NULL};
  BN_CTX *bn = BN_CTX_new();
  BIGNUM *t = BN_new(), *m = BN_new();
  int ok = bn && t && m;
  for (int i = 0; ok && i < COUNT; i++) ok = EVP_PKEY_get_bn_param(pkey, names[i], &v[i]) == 1;
  ok = ok && BN_mul(t, v[P], v[Q], bn) && BN_cmp(t, v[N]) == 0 &&
       BN_sub(m, v[P], BN_value_one()) && BN_mod(t, v[D], m, bn) && BN_cmp(t, v[DP]) == 0 &&
       BN_sub(m, v[Q], BN_value_one()) && BN_mod(t, v[D], m, bn) && BN_cmp(t, v[DQ]) == 0 &&
       BN_mod_mul(t, v[QINV], v[Q], v[P], bn) && BN_is_one(t);
  for (int i = 0; i < COUNT; i++) BN_clear_free(v[i]);
  BN_clear_free(t);
  BN_clear_free(m);
  BN_CTX_free(bn);
  return ok;
}

/* One signature checked with the key's own public half: catches a
 * private exponent that does not match the public one. */
static int sign_round_trip(EVP_PKEY *pkey) {
  static const unsigned char digest[32] = "lua-alipay key consistency chk";
  unsigned char sig[MAX_SIG_BYTES];
  size_t sig_len = sizeof sig;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  int ok = ctx && EVP_PKEY_sign_init(ctx) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_sign(ctx, sig, &sig_len, digest, sizeof digest) == 1 &&
           EVP_PKEY_verify_init(ctx) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_verify(ctx, sig, sig_len, digest, sizeof digest) == 1;
  EVP_PKEY_CTX_free(ctx);
  return ok;
}

static const char *check_rsa(EVP_PKEY *pkey, int want_private) {
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) return "not an RSA key; Alipay signs with RSA";
  int bits = EVP_PKEY_get_bits(pkey);
  if (bits < MIN_BITS) return "RSA key shorter than 1024 bits";
  if (bits > MAX_BITS) return "RSA key longer than 16384 bits";
  if (want_private && !(crt_consistent(pkey) && sign_round_trip(pkey)))
    return "the key's RSA components are inconsistent (damaged key)";
  return NULL;
}

static int new_key(lua_State *L, int want_private) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *what = want_private ? "private_key" : "public_key";
  ap_key *k = lua_newuserdata(L, sizeof *k);
  memset(k, 0, sizeof *k);
  k->is_private = want_private;
  luaL_setmetatable(L, want_private ? AP_PRIVATE_KEY_MT : AP_PUBLIC_KEY_MT);
  parsed r;
  parse_key(L, text, len, want_private, &r);
  lua_pop(L, 1); /* the DER scratch, already wiped */
  if (!r.pkey) return ap_push_error(L, "%s: %s", what, r.error);
  const char *bad = check_rsa(r.pkey, want_private);
  if (bad) {
    EVP_PKEY_free(r.pkey);
    return ap_push_error(L, "%s: %s", what, bad);
  }
  k->pkey = r.pkey;
  k->format = r.format;
  ERR_clear_error();
  return 1;
}

static int l_private_key(lua_State *L) { return new_key(L, 1); }
static int l_public_key(lua_State *L) { return new_key(L, 0); }

/* ---- operations ---- */

/* The context for alg, created on first use and reused: re-initialising
 * per call costs a provider fetch, measurable next to an RSA verify. */
static EVP_PKEY_CTX *key_ctx(ap_key *k, int alg) {
  if (k->ctx[alg]) return k->ctx[alg];
  EVP_MD *md = EVP_MD_fetch(NULL, ALG_DIGESTS[alg], NULL);
  EVP_PKEY_CTX *ctx = md ? EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL) : NULL;
  int ok = ctx && (k->is_private ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
  if (!ok) {
    EVP_PKEY_CTX_free(ctx);
    EVP_MD_free(md);
    return NULL;
  }
  k->md[alg] = md;
  k->ctx[alg] = ctx;
  return ctx;
}

static int digest(ap_key *k, int alg, const char *data, size_t n, unsigned char *out,
                  unsigned int *out_len) {
  if (!k->md_ctx && !(k->md_ctx = EVP_MD_CTX_new())) return 0;
  return EVP_DigestInit_ex2(k->md_ctx, k->md[alg], NULL) == 1 &&
         EVP_DigestUpdate(k->md_ctx, data, n) == 1 &&
         EVP_DigestFinal_ex(k->md_ctx, out, out_len) == 1;
}

/* key:sign(data[, alg]) -> base64 signature */
static int l_sign(lua_State *L) {
  ap_key *k = luaL_checkudata(L, 1, AP_PRIVATE_KEY_MT);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  int alg = luaL_checkoption(L, 3, "RSA2", ALG_NAMES);
  if (!k->pkey) return luaL_error(L, "the key has been closed");
  EVP_PKEY_CTX *ctx = key_ctx(k, alg);
  if (!ctx) return ap_push_ssl_error(L, "sign");
  unsigned char md[EVP_MAX_MD_SIZE], sig[MAX_SIG_BYTES];
  unsigned int md_len;
  size_t sig_len = sizeof sig;
  if (!digest(k, alg, data, n, md, &md_len) || EVP_PKEY_sign(ctx, sig, &sig_len, md, md_len) != 1)
    return ap_push_ssl_error(L, "sign");
  ap_push_b64(L, sig, sig_len);
  return 1;
}

/* key:verify(data, sig_b64[, alg]) -> true | false, reason | nil, err */
static int l_verify(lua_State *L) {
  ap_key *k = luaL_checkudata(L, 1, AP_PUBLIC_KEY_MT);
  size_t n, sn;
  const char *data = luaL_checklstring(L, 2, &n);
  const char *sig_b64 = luaL_checklstring(L, 3, &sn);
  int alg = luaL_checkoption(L, 4, "RSA2", ALG_NAMES);
  if (!k->pkey) return luaL_error(L, "the key has been closed");
  /* Room for the longest signature plus some whitespace; anything longer
   * cannot be a signature of this key and is not decoded at all. */
  unsigned char sig[MAX_SIG_BYTES + MAX_SIG_BYTES / 16 + 8];
  size_t expect = (size_t)EVP_PKEY_get_size(k->pkey);
  long sig_len = ap_b64_decoded_max(sn) <= sizeof sig ? ap_b64_decode(sig_b64, sn, sig) : -2;
  lua_pushboolean(L, 0);
  if (sig_len == -1) { lua_pushliteral(L, "signature is not valid base64"); return 2; }
  if (sig_len < 0 || (size_t)sig_len != expect) {
    lua_pushfstring(L, "signature has the wrong length (expected %d bytes)", (int)expect);
    return 2;
  }
  EVP_PKEY_CTX *ctx = key_ctx(k, alg);
  if (!ctx) return ap_push_ssl_error(L, "verify");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len;
  if (!digest(k, alg, data, n, md, &md_len)) return ap_push_ssl_error(L, "verify");
  int rc = EVP_PKEY_verify(ctx, sig, (size_t)sig_len, md, md_len);
  if (rc != 1) ERR_clear_error(); /* a mismatch leaves reasons on the queue */
  if (rc == 1) { lua_pushboolean(L, 1); return 1; }
  if (rc == 0) { lua_pushliteral(L, "signature does not match"); return 2; }
  return ap_push_error(L, "verify: the RSA operation failed");
}

static int l_bits(lua_State *L) {
  lua_pushinteger(L, EVP_PKEY_get_bits(check_key(L, 1)->pkey));
  return 1;
}

static int l_format(lua_State *L) {
  lua_pushstring(L, check_key(L, 1)->format);
  return 1;
}

/* The public half as PEM (SPKI), e.g. to upload to the Alipay console. */
static int l_public_pem(lua_State *L) {
  ap_key *k = check_key(L, 1);
  BIO *bio = BIO_new(BIO_s_mem());
  char *data;
  if (!bio || PEM_write_bio_PUBKEY(bio, k->pkey) != 1) {
    BIO_free(bio);
    return ap_push_ssl_error(L, "public_pem");
  }
  long n = BIO_get_mem_data(bio, &data);
  lua_pushlstring(L, data, (size_t)n); /* cannot raise for an ordinary size */
  BIO_free(bio);
  return 1;
}

/* The public half as one line of base64 DER: the form the app gateway
 * check reply and the Alipay console use. */
static int l_public_base64(lua_State *L) {
  ap_key *k = check_key(L, 1);
  unsigned char buf[4096], *p = buf;
  int n = i2d_PUBKEY(k->pkey, NULL);
  if (n <= 0 || n > (int)sizeof buf || i2d_PUBKEY(k->pkey, &p) != n)
    return ap_push_ssl_error(L, "public_base64");
  ap_push_b64(L, buf, (size_t)n);
  return 1;
}

static int l_close(lua_State *L) {
  ap_key *k = luaL_testudata(L, 1, AP_PRIVATE_KEY_MT);
  if (!k) k = luaL_checkudata(L, 1, AP_PUBLIC_KEY_MT);
  key_release(k);
  return 0;
}

static int l_tostring(lua_State *L) {
  ap_key *k = luaL_testudata(L, 1, AP_PRIVATE_KEY_MT);
  const char *kind = k ? AP_PRIVATE_KEY_MT : AP_PUBLIC_KEY_MT;
  if (!k) k = luaL_checkudata(L, 1, AP_PUBLIC_KEY_MT);
  if (!k->pkey) lua_pushfstring(L, "%s (closed)", kind);
  else lua_pushfstring(L, "%s (RSA %d-bit, %s)", kind, EVP_PKEY_get_bits(k->pkey), k->format);
  return 1;
}

static void new_key_metatable(lua_State *L, const char *name, const luaL_Reg *methods) {
  static const luaL_Reg meta[] = {
      {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  ap_new_class(L, name, meta, methods);
}

void ap_register_keys(lua_State *L) {
  static const luaL_Reg private_methods[] = {
      {"sign", l_sign},           {"bits", l_bits},   {"format", l_format},
      {"public_pem", l_public_pem}, {"public_base64", l_public_base64},
      {"close", l_close},         {NULL, NULL}};
  static const luaL_Reg public_methods[] = {
      {"verify", l_verify}, {"bits", l_bits}, {"format", l_format},
      {"public_pem", l_public_pem}, {"public_base64", l_public_base64},
      {"close", l_close},   {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"private_key", l_private_key}, {"public_key", l_public_key}, {NULL, NULL}};
  new_key_metatable(L, AP_PRIVATE_KEY_MT, private_methods);
  new_key_metatable(L, AP_PUBLIC_KEY_MT, public_methods);
  luaL_setfuncs(L, fns, 0);
}
