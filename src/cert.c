/* Certificates of the public-key-certificate mode (docs/protocol.md §4):
 * the serial numbers app_cert_sn and alipay_root_cert_sn, and the chain
 * check of a rotated Alipay certificate against the root bundle.
 *
 * SN = lowercase hex MD5 of (issuer DN as RFC 2253 orders it, built by
 * hand) followed by the serial number in decimal. The DN is built the way
 * the official SDKs do, not with X509_NAME_print_ex: `SHORTNAME=value`
 * with the raw UTF-8 value and no RFC 2253 escaping (Python and Node build
 * the same string by hand; Java's getName() agrees on every DN Alipay
 * issues). RDNs come last-first, joined by ','; the values of a
 * multi-valued RDN keep their encoded order, joined by '+', as Java's
 * X500Principal.getName() prints them.
 *
 * The DN pieces are fed to the digest one by one, so no string is built
 * and nothing needs a size limit. All OpenSSL objects are created and
 * freed inside plain C functions that never touch the Lua stack, so a Lua
 * error (out of memory) can never leak them. */
#include <string.h>
#include <time.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include "alipay.h"

#define SN_HEX_LEN 32
/* Signature algorithms under this arc are RSA (PKCS #1); the bundle's SM2
 * and ECDSA roots are not. The trailing dot keeps the match on an arc
 * boundary. */
#define RSA_SIGNATURE_ARC "1.2.840.113549.1.1."

typedef enum {
  SN_OK = 0,
  SN_NOT_X509, /* the DER is not a certificate */
  SN_SSL,      /* an OpenSSL failure (digest unavailable, out of memory) */
} sn_status;

/* ---- the DN, fed to the digest ---- */

static int digest_text(EVP_MD_CTX *md, const char *s) {
  return EVP_DigestUpdate(md, s, strlen(s)) == 1;
}

/* "SHORTNAME=value" for one attribute. An attribute OpenSSL has no name
 * for is written as its dotted OID, as RFC 2253 says. */
static int digest_attribute(EVP_MD_CTX *md, const X509_NAME_ENTRY *entry) {
  const ASN1_OBJECT *type = X509_NAME_ENTRY_get_object(entry);
  int nid = OBJ_obj2nid(type);
  char oid[128];
  const char *name = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
  if (!name) {
    if (OBJ_obj2txt(oid, (int)sizeof oid, type, 1) <= 0) return 0;
    name = oid;
  }
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
  if (n < 0) return 0;
  int ok = digest_text(md, name) && digest_text(md, "=") &&
           EVP_DigestUpdate(md, utf8, (size_t)n) == 1;
  OPENSSL_free(utf8);
  return ok;
}

/* The entries of an X509_NAME are flat, in encoded order; entries of the
 * same RDN share a "set" index and are adjacent. Walk the RDNs from the
 * last one, and each RDN's entries forwards. */
static int digest_issuer(EVP_MD_CTX *md, const X509_NAME *issuer) {
  int last = X509_NAME_entry_count(issuer) - 1;
  while (last >= 0) {
    int rdn = X509_NAME_ENTRY_set(X509_NAME_get_entry(issuer, last));
    int first = last;
    while (first > 0 && X509_NAME_ENTRY_set(X509_NAME_get_entry(issuer, first - 1)) == rdn) first--;
    for (int i = first; i <= last; i++) {
      if (i > first && !digest_text(md, "+")) return 0;
      if (!digest_attribute(md, X509_NAME_get_entry(issuer, i))) return 0;
    }
    last = first - 1;
    if (last >= 0 && !digest_text(md, ",")) return 0;
  }
  return 1;
}

/* The serial as a decimal big integer (negative serials keep their sign,
 * as Java's BigInteger prints them). */
static int digest_serial(EVP_MD_CTX *md, const ASN1_INTEGER *serial) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
  char *dec = bn ? BN_bn2dec(bn) : NULL;
  int ok = dec && digest_text(md, dec);
  OPENSSL_free(dec);
  BN_free(bn);
  return ok;
}

static void to_hex(const unsigned char *bytes, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
}

/* Each byte becomes two digits, so the SN always has 32 of them: the
 * leading zeros some SDKs lose (BigInteger.toString(16)) are kept. */
static sn_status sn_of_x509(const X509 *cert, char out[SN_HEX_LEN]) {
  unsigned char md5[EVP_MAX_MD_SIZE];
  unsigned int md5_len = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestInit_ex(md, EVP_md5(), NULL) == 1 &&
           digest_issuer(md, X509_get_issuer_name(cert)) &&
           digest_serial(md, X509_get0_serialNumber(cert)) &&
           EVP_DigestFinal_ex(md, md5, &md5_len) == 1 && md5_len == SN_HEX_LEN / 2;
  EVP_MD_CTX_free(md);
  if (!ok) return SN_SSL;
  to_hex(md5, md5_len, out);
  return SN_OK;
}

/* The whole of der must be one certificate: trailing bytes mean a
 * damaged or spliced block. */
static X509 *parse_x509(const unsigned char *der, size_t len) {
  const unsigned char *p = der;
  if (len > 0x7fffffff) return NULL;
  X509 *cert = d2i_X509(NULL, &p, (long)len);
  if (cert && p != der + len) {
    X509_free(cert);
    return NULL;
  }
  return cert;
}

static sn_status sn_of_der(const unsigned char *der, size_t len, char out[SN_HEX_LEN]) {
  X509 *cert = parse_x509(der, len);
  if (!cert) return SN_NOT_X509;
  sn_status st = sn_of_x509(cert, out);
  X509_free(cert);
  return st;
}

/* ---- which roots count ---- */

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Reads the outer signatureAlgorithm of a certificate without decoding
 * the rest: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
 * signature }. The decision to skip a root must not depend on whether
 * this OpenSSL can decode its key (SM2 support varies across 3.0.x), so
 * only the generic DER parser is used. Returns 1 for RSA, 0 for anything
 * else, -1 when the bytes are not shaped like a certificate. */
static int signed_with_rsa(const unsigned char *der, size_t len) {
  const unsigned char *p = der;
  if (len > 0x7fffffff) return -1;
  ASN1_SEQUENCE_ANY *outer = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)len);
  if (!outer) return -1;
  int result = -1;
  const ASN1_TYPE *alg_seq = sk_ASN1_TYPE_num(outer) == 3 ? sk_ASN1_TYPE_value(outer, 1) : NULL;
  if (p == der + len && alg_seq && alg_seq->type == V_ASN1_SEQUENCE) {
    /* A SEQUENCE element keeps its whole encoding, tag included. */
    const unsigned char *q = alg_seq->value.sequence->data;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &q, alg_seq->value.sequence->length);
    if (alg) {
      const ASN1_OBJECT *oid;
      char text[128];
      X509_ALGOR_get0(&oid, NULL, NULL, alg);
      if (OBJ_obj2txt(text, (int)sizeof text, oid, 1) > 0)
        result = starts_with(text, RSA_SIGNATURE_ARC);
      X509_ALGOR_free(alg);
    }
  }
  sk_ASN1_TYPE_pop_free(outer, ASN1_TYPE_free);
  return result;
}

/* ---- PEM input ---- */

typedef struct {
  const char *text;
  size_t len;
  size_t pos;
  int saw_private_key; /* for a clearer error when a key is passed by mistake */
} pem_reader;

typedef enum { NEXT_CERT, NEXT_END, NEXT_TRUNCATED } next_status;

/* Advances to the next CERTIFICATE block, skipping blocks of other kinds. */
static next_status next_certificate(pem_reader *r, const char **body, size_t *body_len) {
  char label[64];
  for (;;) {
    int got = ap_pem_next(r->text, r->len, &r->pos, label, sizeof label, body, body_len);
    if (got < 0) return NEXT_TRUNCATED;
    if (got == 0) return NEXT_END;
    if (strcmp(label, "CERTIFICATE") == 0) return NEXT_CERT;
    size_t n = strlen(label);
    if (n >= 11 && strcmp(label + n - 11, "PRIVATE KEY") == 0) r->saw_private_key = 1;
  }
}

static int push_no_certificate(lua_State *L, const char *fn, const pem_reader *r) {
  if (r->saw_private_key)
    return ap_push_error(L, "%s: the input is a private key, not a certificate", fn);
  return ap_push_error(L, "%s: no CERTIFICATE block in the input", fn);
}

static int push_truncated(lua_State *L, const char *fn) {
  return ap_push_error(L, "%s: truncated PEM (a BEGIN line without its END line)", fn);
}

/* ---- Lua ---- */

/* cert_sn(pem) -> SN of the first certificate, or nil, err. */
static int l_cert_sn(lua_State *L) {
  pem_reader r = {0};
  r.text = luaL_checklstring(L, 1, &r.len);
  const char *body;
  size_t body_len, der_len;
  next_status next = next_certificate(&r, &body, &body_len);
  if (next == NEXT_TRUNCATED) return push_truncated(L, "cert_sn");
  if (next == NEXT_END) return push_no_certificate(L, "cert_sn", &r);
  const unsigned char *der = ap_b64_decode_scratch(L, body, body_len, &der_len);
  if (!der) return ap_push_error(L, "cert_sn: the CERTIFICATE block is not valid base64");
  char sn[SN_HEX_LEN];
  switch (sn_of_der(der, der_len, sn)) {
  case SN_NOT_X509: return ap_push_error(L, "cert_sn: not a valid X.509 certificate");
  case SN_SSL: return ap_push_ssl_error(L, "cert_sn");
  case SN_OK: break;
  }
  lua_pushlstring(L, sn, SN_HEX_LEN);
  return 1;
}

/* root_cert_sn(pem) -> the SNs of the RSA-signed certificates of the
 * bundle, in file order, joined by '_'; nil, err when there is none. */
static int l_root_cert_sn(lua_State *L) {
  pem_reader r = {0};
  r.text = luaL_checklstring(L, 1, &r.len);
  int certs = 0, rsa = 0;
  const char *body;
  size_t body_len, der_len;
  luaL_Buffer out;
  luaL_buffinit(L, &out);
  for (;;) {
    next_status next = next_certificate(&r, &body, &body_len);
    if (next == NEXT_TRUNCATED) return push_truncated(L, "root_cert_sn");
    if (next == NEXT_END) break;
    certs++;
    const unsigned char *der = ap_b64_decode_scratch(L, body, body_len, &der_len);
    if (!der)
      return ap_push_error(L, "root_cert_sn: CERTIFICATE block %d is not valid base64", certs);
    int is_rsa = signed_with_rsa(der, der_len);
    char sn[SN_HEX_LEN];
    sn_status st = is_rsa == 1 ? sn_of_der(der, der_len, sn) : SN_OK;
    lua_pop(L, 1); /* the DER scratch: keeps the buffer's stack use balanced */
    if (is_rsa < 0 || st == SN_NOT_X509)
      return ap_push_error(L, "root_cert_sn: certificate %d is not a valid X.509 certificate",
                           certs);
    if (st == SN_SSL) return ap_push_ssl_error(L, "root_cert_sn");
    if (!is_rsa) continue;
    if (rsa++) luaL_addchar(&out, '_');
    luaL_addlstring(&out, sn, SN_HEX_LEN);
  }
  if (certs == 0) return push_no_certificate(L, "root_cert_sn", &r);
  if (rsa == 0)
    return ap_push_error(L, "root_cert_sn: none of the %d certificates is signed with RSA", certs);
  luaL_pushresult(&out);
  return 1;
}

/* ---- the chain of a downloaded certificate ---- */

/* A rotated Alipay certificate is trusted only if it chains to the root
 * bundle the app configured (the SDKs' rule). The download may carry the
 * leaf's intermediates after it; a real bundle has a handful of roots. The
 * caps keep the DER spans in fixed arrays, with no allocation to undo. */
#define MAX_CHAIN_CERTS 16

typedef struct {
  const unsigned char *der;
  size_t len;
} der_span;

typedef enum {
  CHAIN_OK = 0,
  CHAIN_NOT_X509, /* a certificate of the input does not parse */
  CHAIN_NO_ROOT,  /* no certificate of the bundle parses */
  CHAIN_SSL,      /* an OpenSSL failure (out of memory) */
  CHAIN_REFUSED,  /* X509_verify_cert said no: *verify_error says why */
} chain_status;

/* Builds the store from the roots that parse (a root this OpenSSL cannot
 * read, e.g. an SM2 one, can vouch for nothing) and verifies the first of
 * certs with the others as untrusted intermediates, at `now` when
 * use_now. Every OpenSSL object is freed here, before any Lua call. */
static chain_status verify_chain(const der_span *certs, int ncerts, const der_span *roots,
                                 int nroots, int use_now, time_t now, int *verify_error,
                                 int *bad_index) {
  chain_status st = CHAIN_SSL;
  X509 *leaf = NULL;
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  if (!untrusted || !store || !ctx) goto done;
  for (int i = 0; i < ncerts; i++) {
    X509 *x = parse_x509(certs[i].der, certs[i].len);
    if (!x) {
      *bad_index = i + 1;
      st = CHAIN_NOT_X509;
      goto done;
    }
    if (i == 0) {
      leaf = x;
    } else if (!sk_X509_push(untrusted, x)) {
      X509_free(x);
      goto done;
    }
  }
  int trusted = 0;
  for (int i = 0; i < nroots; i++) {
    X509 *x = parse_x509(roots[i].der, roots[i].len);
    if (!x) continue;
    int added = X509_STORE_add_cert(store, x); /* takes its own reference */
    X509_free(x);
    if (!added) goto done;
    trusted++;
  }
  if (trusted == 0) {
    st = CHAIN_NO_ROOT;
    goto done;
  }
  if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) goto done;
  if (use_now) X509_STORE_CTX_set_time(ctx, 0, now);
  int verified = X509_verify_cert(ctx);
  if (verified == 1) {
    st = CHAIN_OK;
  } else if (verified == 0) {
    *verify_error = X509_STORE_CTX_get_error(ctx);
    *bad_index = X509_STORE_CTX_get_error_depth(ctx);
    st = CHAIN_REFUSED;
  }
done:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  sk_X509_pop_free(untrusted, X509_free);
  X509_free(leaf);
  return st;
}

/* Decodes every CERTIFICATE block of the text into spans; the DER scratch
 * buffers stay on the Lua stack until the caller returns. Returns the
 * count, or pushes nil, err and returns -1. */
static int collect_certs(lua_State *L, pem_reader *r, const char *what, der_span *out) {
  int n = 0;
  const char *body;
  size_t body_len;
  for (;;) {
    next_status next = next_certificate(r, &body, &body_len);
    if (next == NEXT_TRUNCATED) return push_truncated(L, "cert_verify"), -1;
    if (next == NEXT_END) return n;
    if (n == MAX_CHAIN_CERTS) {
      ap_push_error(L, "cert_verify: the %s has more than %d certificates", what, MAX_CHAIN_CERTS);
      return -1;
    }
    out[n].der = ap_b64_decode_scratch(L, body, body_len, &out[n].len);
    if (!out[n].der) {
      ap_push_error(L, "cert_verify: CERTIFICATE block %d of the %s is not valid base64", n + 1, what);
      return -1;
    }
    n++;
  }
}

/* cert_verify(cert_pem, root_bundle_pem[, now]) -> true, or nil, err: the
 * first certificate of cert_pem (the others are its intermediates) chains
 * to a certificate of the bundle, and every certificate of the chain is
 * valid at now (seconds since the epoch; default the current time). */
static int l_cert_verify(lua_State *L) {
  pem_reader cert = {0}, root = {0};
  cert.text = luaL_checklstring(L, 1, &cert.len);
  root.text = luaL_checklstring(L, 2, &root.len);
  int use_now = !lua_isnoneornil(L, 3);
  time_t now = use_now ? (time_t)luaL_checkinteger(L, 3) : 0;
  luaL_checkstack(L, 2 * MAX_CHAIN_CERTS + 4, "cert_verify");
  der_span certs[MAX_CHAIN_CERTS], roots[MAX_CHAIN_CERTS];
  int ncerts = collect_certs(L, &cert, "certificate", certs);
  if (ncerts < 0) return 2;
  if (ncerts == 0) return push_no_certificate(L, "cert_verify", &cert);
  int nroots = collect_certs(L, &root, "root bundle", roots);
  if (nroots < 0) return 2;
  if (nroots == 0) return ap_push_error(L, "cert_verify: no CERTIFICATE block in the root bundle");
  int verify_error = 0, bad_index = 0;
  switch (verify_chain(certs, ncerts, roots, nroots, use_now, now, &verify_error, &bad_index)) {
  case CHAIN_OK: break;
  case CHAIN_NOT_X509:
    return ap_push_error(L, "cert_verify: certificate %d is not a valid X.509 certificate",
                         bad_index);
  case CHAIN_NO_ROOT:
    return ap_push_error(L, "cert_verify: no certificate of the root bundle can be read");
  case CHAIN_SSL: return ap_push_ssl_error(L, "cert_verify");
  case CHAIN_REFUSED:
    /* OpenSSL's fixed text for the code ("certificate has expired",
     * "unable to get local issuer certificate"): it names no data. */
    return ap_push_error(L, "cert_verify: %s (at depth %d of the chain)",
                         X509_verify_cert_error_string(verify_error), bad_index);
  }
  lua_pushboolean(L, 1);
  return 1;
}

void ap_register_cert(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"cert_sn", l_cert_sn},
      {"root_cert_sn", l_root_cert_sn},
      {"cert_verify", l_cert_verify},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
