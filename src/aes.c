/* Content encryption (docs/protocol.md §5): AES-CBC, IV of 16 zero bytes,
 * PKCS#7 padding, base64 text on the wire. The key is the console's
 * base64 string; its decoded length picks AES-128, -192 or -256.
 *
 * Buffers are Lua userdata allocated before the cipher context exists;
 * the context is created, used and freed in plain C that never touches
 * the Lua stack, so a Lua error cannot leak it. */
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "alipay.h"

#define AES_BLOCK 16
/* EVP_*Update take an int length: feed large inputs in slices this size
 * (a multiple of the block, so decryption slices stay aligned). */
#define SLICE ((size_t)1 << 30)

typedef struct {
  unsigned char bytes[32];
  const EVP_CIPHER *cipher;
} aes_key;

static const EVP_CIPHER *cipher_for(size_t key_len) {
  switch (key_len) {
  case 16: return EVP_aes_128_cbc();
  case 24: return EVP_aes_192_cbc();
  case 32: return EVP_aes_256_cbc();
  default: return NULL;
  }
}

/* Decodes the base64 key at stack index idx. Returns 1, or pushes nil and
 * an error (that never includes the key) and returns 0. */
static int read_key(lua_State *L, int idx, aes_key *key) {
  size_t text_len, len;
  const char *text = luaL_checklstring(L, idx, &text_len);
  unsigned char *raw = ap_b64_decode_scratch(L, text, text_len, &len);
  if (!raw) {
    ap_push_error(L, "aes key: not valid base64");
    return 0;
  }
  key->cipher = cipher_for(len);
  if (key->cipher) memcpy(key->bytes, raw, len);
  /* The scratch is garbage-collected memory: wipe the key out of it. */
  OPENSSL_cleanse(raw, len);
  lua_pop(L, 1);
  if (!key->cipher) {
    ap_push_error(L, "aes key: %zu bytes, expected 16, 24 or 32", len);
    return 0;
  }
  return 1;
}

typedef enum {
  CIPHER_OK = 0,
  CIPHER_FAILED,    /* set-up or update failed: an OpenSSL problem */
  CIPHER_BAD_FINAL, /* the last block failed: for decryption, bad padding */
} cipher_status;

/* Runs the whole cipher over in[0..n) into out, which must hold n plus one
 * block, and sets *out_len. */
static cipher_status run_cipher(const aes_key *key, int encrypt, const unsigned char *in, size_t n,
                                unsigned char *out, size_t *out_len) {
  static const unsigned char zero_iv[AES_BLOCK] = {0};
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  size_t total = 0;
  int ok = ctx && EVP_CipherInit_ex(ctx, key->cipher, NULL, key->bytes, zero_iv, encrypt) == 1;
  for (size_t done = 0; ok && done < n;) {
    size_t slice = n - done < SLICE ? n - done : SLICE;
    int got = 0;
    ok = EVP_CipherUpdate(ctx, out + total, &got, in + done, (int)slice) == 1;
    total += (size_t)got;
    done += slice;
  }
  cipher_status st = ok ? CIPHER_OK : CIPHER_FAILED;
  if (ok) {
    int got = 0;
    if (EVP_CipherFinal_ex(ctx, out + total, &got) == 1) total += (size_t)got;
    else st = CIPHER_BAD_FINAL;
  }
  EVP_CIPHER_CTX_free(ctx);
  *out_len = total;
  return st;
}

/* aes_encrypt(key_b64, plain) -> base64 ciphertext, or nil, err. */
static int l_aes_encrypt(lua_State *L) {
  size_t n, len;
  aes_key key;
  /* Misuse raises: check the arguments before any key byte is copied. */
  luaL_checkstring(L, 1);
  const unsigned char *plain = (const unsigned char *)luaL_checklstring(L, 2, &n);
  if (!read_key(L, 1, &key)) return 2;
  unsigned char *out = lua_newuserdata(L, n + AES_BLOCK);
  cipher_status st = run_cipher(&key, 1, plain, n, out, &len);
  OPENSSL_cleanse(key.bytes, sizeof key.bytes);
  if (st != CIPHER_OK) return ap_push_ssl_error(L, "aes_encrypt");
  ap_push_b64(L, out, len);
  return 1;
}

/* aes_decrypt(key_b64, cipher_b64) -> plaintext, or nil, err. */
static int l_aes_decrypt(lua_State *L) {
  size_t text_len, n, len;
  aes_key key;
  luaL_checkstring(L, 1);
  const char *text = luaL_checklstring(L, 2, &text_len);
  if (!read_key(L, 1, &key)) return 2;
  const unsigned char *cipher = ap_b64_decode_scratch(L, text, text_len, &n);
  if (!cipher) return ap_push_error(L, "aes_decrypt: ciphertext is not valid base64");
  if (n == 0) return ap_push_error(L, "aes_decrypt: ciphertext is empty");
  if (n % AES_BLOCK)
    return ap_push_error(L, "aes_decrypt: ciphertext length is not a multiple of %d", AES_BLOCK);
  unsigned char *out = lua_newuserdata(L, n + AES_BLOCK);
  cipher_status st = run_cipher(&key, 0, cipher, n, out, &len);
  OPENSSL_cleanse(key.bytes, sizeof key.bytes);
  if (st == CIPHER_BAD_FINAL)
    return ap_push_error(L, "aes_decrypt: bad padding (wrong key or corrupted data)");
  if (st != CIPHER_OK) return ap_push_ssl_error(L, "aes_decrypt");
  lua_pushlstring(L, (const char *)out, len);
  return 1;
}

void ap_register_aes(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"aes_encrypt", l_aes_encrypt},
      {"aes_decrypt", l_aes_decrypt},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
